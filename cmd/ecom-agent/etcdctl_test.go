package main

import (
	"os"
	"os/exec"
	"path/filepath"
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

// `ecom-agent etcdutl` runs the built-in etcdutl: its version, and a
// snapshot's status (a file that is no snapshot is an error, exit 1).
func TestEtcdutl(t *testing.T) {
	run := func(args ...string) (string, error) {
		cmd := exec.Command(os.Args[0], append([]string{"etcdutl"}, args...)...)
		cmd.Env = append(os.Environ(), "ECOM_AGENT_TEST_MAIN=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("version"); err != nil || !strings.Contains(out, "etcdutl version: 3.7.") {
		t.Errorf("etcdutl version: %v:\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "not-a-snapshot.db")
	if err := os.WriteFile(bad, []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run("snapshot", "status", bad); err == nil {
		t.Errorf("snapshot status of a non-snapshot succeeded:\n%s", out)
	}
}
