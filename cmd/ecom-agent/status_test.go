package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/ecom-platform/ecom-agent/apilb"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
)

func sampleStatus() status.Status {
	return status.Status{
		SchemaVersion: status.StatusSchemaVersion, Source: "daemon", Verdict: status.Degraded,
		Reasons: []string{"seeding: 1 object(s) failed to apply (see seed.problems)"},
		Node:    status.Node{Name: "cp-1", Role: "control-plane", Cluster: "shop"},
		Phase:   nodestate.PhaseAPIReady,
		ControlPlane: &status.ControlPlaneStatus{
			Ready: true, ReadySince: time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC),
			Binaries: []status.Binary{{Name: "kube-apiserver", Path: "/usr/bin/kube-apiserver", Version: "v1.37.2"}},
		},
		Certificates: &status.CertSummary{Count: 25, Nearest: "etcd/peer", NearestNotAfter: time.Now().Add(100*24*time.Hour + time.Hour)},
		Seed: &status.SeedStatus{
			Enabled: true, Leader: true, Seeder: "cp-1", Finished: time.Now().Add(-time.Minute),
			Counts:   map[string]int{"created": 70, "skipped": 1, "failed": 1},
			Problems: []string{"VerticalPodAutoscaler ecommerce/backend (71-vpa.yaml): skipped: not served"},
		},
	}
}

func TestStatusTableShowsControlPlaneAndSeeding(t *testing.T) {
	var buf bytes.Buffer
	if err := writeStatus(&buf, sampleStatus(), "table", false); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"DEGRADED  cp-1 (control-plane) in cluster shop: seeding: 1 object(s) failed",
		"kube-apiserver  ready since 2026-11-30T04:00:00Z",
		"binaries        kube-apiserver v1.37.2",
		"seeding         by cp-1 (this node), 1m0s ago: 70 created, 1 skipped, 1 failed",
		"  VerticalPodAutoscaler ecommerce/backend (71-vpa.yaml): skipped",
		"certificates    25, the first to expire: etcd/peer on ",
		"(in 100d)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour codes without a terminal:\n%s", out)
	}
	buf.Reset()
	_ = writeStatus(&buf, sampleStatus(), "table", true)
	if !strings.HasPrefix(buf.String(), "\x1b[1;33mDEGRADED\x1b[0m") {
		t.Errorf("degraded is not yellow on a terminal: %q", buf.String()[:30])
	}
}

func TestStatusTableShowsNetworkPolicy(t *testing.T) {
	for _, c := range []struct {
		np   *status.NetworkPolicyStatus
		want string
	}{
		{&status.NetworkPolicyStatus{Engine: "kube-router", Enforcing: true, PolicyChains: 10, PodChains: 3},
			"netpol          enforced by kube-router: 10 policy chain(s), 3 pod firewall chain(s)\n"},
		{&status.NetworkPolicyStatus{Engine: "kube-router", Error: "waiting for the kubelet to register Node w1"},
			"netpol          NOT ENFORCED: waiting for the kubelet to register Node w1\n"},
		{&status.NetworkPolicyStatus{Off: true}, "netpol          off (network.policy = false)"},
	} {
		st := sampleStatus()
		st.NetworkPolicy = c.np
		var buf bytes.Buffer
		if err := writeStatus(&buf, st, "table", false); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), c.want) {
			t.Errorf("table lacks %q:\n%s", c.want, buf.String())
		}
	}
}

func TestStatusTableShowsThePlatform(t *testing.T) {
	st := sampleStatus()
	st.Platform = &status.PlatformStatus{Workloads: 9, Ready: 7, NotReadySince: time.Now().Add(-11 * time.Minute), Overdue: true,
		NotReady: []status.PlatformProblem{{Object: "Deployment ecommerce/backend", Reason: "0/5 available; pod backend-1: ImagePullBackOff"}}}
	var buf bytes.Buffer
	if err := writeStatus(&buf, st, "table", false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"platform        7 of 9 seeded workloads available, not all since 11m0s ago (ecom-agent verify says more)",
		"  Deployment ecommerce/backend: 0/5 available; pod backend-1: ImagePullBackOff",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	st.Platform = &status.PlatformStatus{Workloads: 9, Ready: 9,
		NotSeeded: []status.PlatformProblem{{Object: "Deployment ecommerce/grafana", Reason: "not seeded: its image cannot be built here"}}}
	buf.Reset()
	_ = writeStatus(&buf, st, "table", false)
	if !strings.Contains(buf.String(), "platform        9 of 9 seeded workloads available\n  Deployment ecommerce/grafana: not seeded: its image cannot be built here\n") {
		t.Errorf("all available, Grafana not seeded:\n%s", buf.String())
	}
}

func TestStatusYAMLIsTheJSONDocument(t *testing.T) {
	var buf bytes.Buffer
	if err := writeStatus(&buf, sampleStatus(), "yaml", false); err != nil {
		t.Fatal(err)
	}
	var back status.Status
	if err := yaml.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if back.Seed == nil || back.Seed.Counts["created"] != 70 || back.ControlPlane == nil || !back.ControlPlane.Ready || back.Phase != nodestate.PhaseAPIReady {
		t.Errorf("round trip lost fields: %+v", back)
	}
	if !strings.Contains(buf.String(), "schema_version: 1") {
		t.Errorf("yaml keys are not the JSON names:\n%s", buf.String())
	}
}

func TestStatusTableShowsKubelet(t *testing.T) {
	s := sampleStatus()
	s.Node.Role = "worker"
	s.Kubelet = &status.NodeStatus{
		KubeletStarted: true, Reason: "KubeletNotReady: cni plugin not initialized",
		Runtime: "containerd v2.4.2 (CRI v1)", PodCIDR: "10.244.3.0/24",
		Routes: []string{"10.244.0.0/24 via 10.77.0.11", "10.244.1.0/24 via 10.77.0.12"},
		Images: []string{"/usr/share/ecom-agent/images/pause.tar"},
		APILoadBalancer: []apilb.EndpointStatus{
			{Address: "10.77.0.11:6443", Healthy: true, Connections: 3},
			{Address: "10.77.0.12:6443", LastError: "dial tcp: connection refused"},
		},
	}
	var buf bytes.Buffer
	if err := writeStatus(&buf, s, "table", false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"kubelet         Node not Ready: KubeletNotReady: cni plugin not initialized",
		"runtime         containerd v2.4.2 (CRI v1)",
		"pod network     10.244.3.0/24, 2 route(s) to other nodes' pods",
		"images          /usr/share/ecom-agent/images/pause.tar",
		"API via         127.0.0.1:6444 -> 10.77.0.11:6443 healthy (3 conns), 10.77.0.12:6443 unhealthy (0 conns)",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

// runCLIAt runs the CLI with the node's files under hostRoot.
func runCLIAt(t *testing.T, hostRoot string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, hostRoot: hostRoot}
	code = c.run(args)
	return code, out.String(), errOut.String()
}

// Without a daemon, a state file or a config, status says what is wrong
// and what to run, and prints no blank fields nor Go's HTTP internals.
func TestStatusWithoutDaemonSaysWhatToRun(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "agent.sock")
	code, out, errOut := runCLIAt(t, t.TempDir(), "status", "--socket", socket, "--config", writeConfig(t, testConfigTOML))
	want := "DOWN  cp-1 (control-plane) in cluster shop-test: this node has not joined its cluster (there is no /var/lib/ecom-agent/state.json) " +
		"and the agent is not running (no socket at " + socket + "): run `ecom-agent join`\n"
	if code != statusDown || !strings.HasPrefix(out, want) {
		t.Errorf("not joined: exit %d, stdout\n%s\nwant it to start with\n%s", code, out, want)
	}
	missing := filepath.Join(t.TempDir(), "config.toml")
	code, out2, errOut2 := runCLIAt(t, t.TempDir(), "status", "--socket", socket, "--config", missing)
	want = "DOWN  this node: the agent is not running (no socket at " + socket + "), and there is no config at " + missing +
		": this node has not been set up; write the config (`ecom-agent config print-defaults` prints the commented example), then run `ecom-agent join`\n"
	if code != statusDown || !strings.HasPrefix(out2, want) {
		t.Errorf("no config: exit %d, stdout\n%s\nwant it to start with\n%s", code, out2, want)
	}
	for _, bad := range []string{"dial unix", "http://agent", "()", "cluster :", "id ,", "address ,", "phase    \n"} {
		if strings.Contains(out+errOut+out2+errOut2, bad) {
			t.Errorf("output shows %q:\n%s%s%s%s", bad, out, errOut, out2, errOut2)
		}
	}
}

// -w takes its interval as the next argument too; alone it means 2s.
func TestStatusWatchTakesASeparateValue(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{[]string{"status", "-w", "5s"}, 5 * time.Second},
		{[]string{"status", "--watch", "5s"}, 5 * time.Second},
		{[]string{"status", "-w=5s"}, 5 * time.Second},
		{[]string{"status", "-w"}, 2 * time.Second},
		{[]string{"status", "-w", "-o", "json"}, 2 * time.Second},
		{[]string{"status", "-o", "json", "--watch"}, 2 * time.Second},
	} {
		root := (&cli{}).rootCommand()
		cmd, rest, err := root.Find(joinOptionalValues(root, tc.args))
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		got, _ := cmd.Flags().GetDuration("watch")
		if got != tc.want || len(cmd.Flags().Args()) != 0 {
			t.Errorf("%v: watch %s, arguments %q; want %s and none", tc.args, got, cmd.Flags().Args(), tc.want)
		}
	}
	// The whole command line: --schema prints and returns before watching.
	for _, sep := range [][]string{{"-w", "5s"}, {"--watch", "5s"}} {
		code, out, errOut := runCLI(t, append([]string{"status", "--schema"}, sep...)...)
		if code != exitOK || !strings.Contains(out, "$schema") {
			t.Errorf("status --schema %v: exit %d, stderr %q", sep, code, errOut)
		}
	}
}
