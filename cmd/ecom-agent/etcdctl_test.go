package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The local member and the agent's client credentials come first; a flag
// the operator gives replaces the preset one (pflag would append a second
// --endpoints to the first, not replace it).
func TestEtcdctlArgs(t *testing.T) {
	got := etcdctlArgs(2379, []string{"member", "list", "-w", "table"})
	want := []string{
		"--endpoints=https://127.0.0.1:2379",
		"--cacert=/etc/kubernetes/pki/etcd/ca.crt",
		"--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt",
		"--key=/etc/kubernetes/pki/etcd/healthcheck-client.key",
		"member", "list", "-w", "table",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	got = etcdctlArgs(12379, []string{"--endpoints=https://10.0.0.2:12379,https://10.0.0.3:12379", "--cert", "/root/me.crt", "endpoint", "health"})
	if strings.Count(strings.Join(got, " "), "--endpoints") != 1 || strings.Count(strings.Join(got, " "), "--cert") != 1 ||
		!slices.Contains(got, "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key") || got[len(got)-1] != "health" {
		t.Errorf("with the operator's flags: %q", got)
	}
}

// `ecom-agent etcdctl version` runs the built-in etcdctl (it needs no
// member to print its version).
func TestEtcdctlVersion(t *testing.T) {
	cmd := exec.Command(os.Args[0], "etcdctl", "version")
	cmd.Env = append(os.Environ(), "ECOM_AGENT_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "etcdctl version: 3.7.") {
		t.Errorf("%v:\n%s", err, out)
	}
}
