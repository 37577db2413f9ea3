package preflight

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/hostfs"
)

// nodeRoot is a test root laid out as a host the kubelet can run on: no
// swap, br_netfilter and overlay loaded, systemd as init on cgroup v2,
// and the kubelet's, kube-proxy's and containerd's programs installed.
func nodeRoot(t *testing.T, cfg *config.Config) *hostfs.Root {
	t.Helper()
	root := configtest.Root(t)
	files := map[string]string{
		"/proc/swaps":                       "Filename\tType\tSize\tUsed\tPriority\n",
		"/sys/module/br_netfilter/refcnt":   "0\n",
		"/sys/module/overlay/refcnt":        "0\n",
		"/run/systemd/system/.keep":         "",
		"/proc/self/mountinfo":              "30 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n",
		"/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory hugetlb pids\n",
		cfg.Binaries.Kubelet:                "#!/bin/sh\n",
		cfg.Binaries.KubeProxy:              "#!/bin/sh\n",
		cfg.Binaries.Containerd:             "#!/bin/sh\n",
		cfg.Binaries.Ctr:                    "#!/bin/sh\n",
	}
	for p, data := range files {
		if _, err := root.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// A port something else listens on fails the check, naming the config key
// to change; free ports pass.
func TestPreflightPorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	cfg := configtest.Parse(t, strings.Replace(configtest.ControlPlaneTOML(t), "[gossip]", fmt.Sprintf("[etcd]\nclient_port = %d\npeer_port = %d\n[apiserver]\nport = %d\n[metrics]\naddress = \"127.0.0.1:%d\"\n[gossip]",
		configtest.FreePort(t), configtest.FreePort(t), configtest.FreePort(t), configtest.FreePort(t)), 1))
	// A worker: its node's programs and host, then the ports.
	cfg.Role = "worker"
	root := nodeRoot(t, cfg)
	if got := Preflight(context.Background(), root, cfg, true); len(got) != 0 {
		t.Fatalf("free ports: %v", got)
	}
	cfg.Gossip.RPCPort = port
	got := Preflight(context.Background(), root, cfg, true)
	if len(got) != 1 || got[0].Check != "ports" || !strings.Contains(got[0].Problem, fmt.Sprintf("127.0.0.1:%d (the agents' RPC endpoint) is in use: bind: address already in use", port)) ||
		!strings.Contains(got[0].Fix, "gossip.rpc_port") {
		t.Errorf("busy RPC port: %v", got)
	}
	// A half-joined node's ports are its own units': not checked.
	if got := Preflight(context.Background(), root, cfg, false); len(got) != 0 {
		t.Errorf("ports checked on a joined node: %v", got)
	}
}

// A control-plane node without its programs fails with the package to
// install.
func TestPreflightBinaries(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	got := Preflight(context.Background(), nodeRoot(t, cfg), cfg, false)
	if len(got) != 1 || got[0].Check != "binaries" || !strings.Contains(got[0].Problem, "kube-apiserver not found") || !strings.Contains(got[0].Fix, "ecom-agent-kubernetes") {
		t.Errorf("missing binaries: %v", got)
	}
}

// A worker whose host cannot run the kubelet fails at join with every
// reason and its fix: programs missing, swap on, a module missing, cgroup
// v1 without cpu and cpuacct.
func TestPreflightNode(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	cfg.Role = "worker"
	root := nodeRoot(t, cfg)
	for p, data := range map[string]string{
		"/proc/swaps":          "Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1048572 0 -2\n",
		"/proc/self/mountinfo": "30 1 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n32 30 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n33 30 0:29 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n",
	} {
		if _, err := root.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{cfg.Binaries.Containerd, "/sys/module/overlay"} {
		if err := root.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	got := Preflight(context.Background(), root, cfg, false)
	var lines []string
	for _, f := range got {
		lines = append(lines, f.String())
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{
		"[binaries] containerd not found at /usr/bin/containerd\n    fix: install the ecom-agent-containerd package, or set binaries.containerd in the config to where it is",
		"[swap] swap is on (/swapfile) and failSwapOn is true: the kubelet will not start\n    fix: swapoff -a",
		"[modules] kernel module not loaded: overlay\n    fix: modprobe overlay",
		"[cgroups] cgroup v1 controllers not mounted: cpu, cpuacct",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("preflight lacks %q:\n%s", want, all)
		}
	}
	if len(got) != 4 {
		t.Errorf("%d failures, want 4:\n%s", len(got), all)
	}
}
