package agent

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
)

// A port something else listens on fails the check, naming the config key
// to change; free ports pass.
func TestPreflightPorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	cfg := parse(t, strings.Replace(cpConfig(t), "[gossip]", fmt.Sprintf("[etcd]\nclient_port = %d\npeer_port = %d\n[apiserver]\nport = %d\n[metrics]\naddress = \"127.0.0.1:%d\"\n[gossip]",
		freePort(t), freePort(t), freePort(t), freePort(t)), 1))
	// A worker has no Kubernetes programs to check yet: only ports.
	cfg.Role = "worker"
	if got := Preflight(context.Background(), testRoot(t), cfg, true); len(got) != 0 {
		t.Fatalf("free ports: %v", got)
	}
	cfg.Gossip.RPCPort = port
	got := Preflight(context.Background(), testRoot(t), cfg, true)
	if len(got) != 1 || got[0].Check != "ports" || !strings.Contains(got[0].Problem, fmt.Sprintf("127.0.0.1:%d (the agents' RPC endpoint) is in use: bind: address already in use", port)) ||
		!strings.Contains(got[0].Fix, "gossip.rpc_port") {
		t.Errorf("busy RPC port: %v", got)
	}
	// A half-joined node's ports are its own units': not checked.
	if got := Preflight(context.Background(), testRoot(t), cfg, false); len(got) != 0 {
		t.Errorf("ports checked on a joined node: %v", got)
	}
}

// A control-plane node without its programs fails with the package to
// install.
func TestPreflightBinaries(t *testing.T) {
	cfg := parse(t, cpConfig(t))
	got := Preflight(context.Background(), testRoot(t), cfg, false)
	if len(got) != 1 || got[0].Check != "binaries" || !strings.Contains(got[0].Problem, "kube-apiserver not found") || !strings.Contains(got[0].Fix, "ecom-agent-kubernetes") {
		t.Errorf("missing binaries: %v", got)
	}
}
