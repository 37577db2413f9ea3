package bootstrap

import (
	"context"
	"slices"
	"testing"
)

// Everything the renderer writes is in the catalogue, so reset removes
// it; the one exception is the agent's own unit, which is the package's.
func TestRendererWritesOnlyCataloguedPaths(t *testing.T) {
	for _, role := range []string{"control-plane", "worker"} {
		t.Run(role, func(t *testing.T) {
			root := testRoot(t)
			toml := baseConfig
			if role == "worker" {
				toml = workerConfig
			}
			r := NewRenderer(parseConfig(t, toml), root, discardLogger())
			if _, err := r.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			files := snapshot(t, root)
			if len(files) == 0 {
				t.Fatal("the renderer wrote nothing")
			}
			for p := range files {
				if p != AgentUnitFile && !IsGenerated(p) {
					t.Errorf("the renderer wrote %s, which the catalogue (GeneratedPaths) does not list: reset would leave it", p)
				}
			}
		})
	}
}

func TestUnitsOf(t *testing.T) {
	cp := testConfig(t, "")
	worker := parseConfig(t, workerConfig)
	for _, c := range []struct {
		name string
		got  []string
		want []string
	}{
		{"control-plane etcd", UnitsOf(cp, GroupEtcd), []string{EtcdUnit}},
		{"control-plane control plane", UnitsOf(cp, GroupControlPlane), []string{APIServerUnit, ControllerManagerUnit, SchedulerUnit, KubeProxyUnit}},
		{"control-plane node", UnitsOf(cp, GroupNode), []string{ContainerdUnit, KubeletUnit}},
		{"worker etcd", UnitsOf(worker, GroupEtcd), nil},
		{"worker control plane", UnitsOf(worker, GroupControlPlane), nil},
		{"worker node", UnitsOf(worker, GroupNode), []string{KubeProxyUnit, ContainerdUnit, KubeletUnit}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	for _, p := range []string{"/etc/kubernetes/pki/ca.key", "/var/lib/ecom-agent/state.json", "/etc/systemd/system/etcd.service"} {
		if !IsGenerated(p) {
			t.Errorf("IsGenerated(%s) = false", p)
		}
	}
	for _, p := range []string{"/etc/kubernetes/manifests", "/var/lib/ecom-agent/images/x.tar", "/var/lib/ecom-agent", "/etc/ecom-agent/config.toml", "/etc/systemd/system/ssh.service"} {
		if IsGenerated(p) {
			t.Errorf("IsGenerated(%s) = true", p)
		}
	}
}
