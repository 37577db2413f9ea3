package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckExpiration(t *testing.T) {
	root := t.TempDir()
	short := testConfigTOML + "\n[pki]\ncert_validity = \"720h\"\nrenew_before = \"168h\"\n"
	if code, _, errOut := runCLI(t, "render", "--config", writeConfig(t, short), "--root", root); code != exitOK {
		t.Fatalf("render: %d %s", code, errOut)
	}

	code, out, errOut := runCLI(t, "certs", "check-expiration", "--config", writeConfig(t, short), "--root", root)
	if code != exitOK {
		t.Fatalf("fresh certificates: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"CERTIFICATE", "etcd/server", "/etc/kubernetes/admin.conf", "kubelet-client-current.pem", "ok (CA, not renewed automatically)", "29d"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	// With a renewal window longer than what the leaves have left, every
	// leaf is due and the command says so with exit code 1.
	long := testConfigTOML + "\n[pki]\nrenew_before = \"720h\"\n"
	code, out, errOut = runCLI(t, "certs", "check-expiration", "--config", writeConfig(t, long), "--root", root, "-o", "json")
	if code != exitFailure || !strings.Contains(errOut, "inside the renewal window") {
		t.Fatalf("due certificates: exit %d, stderr %q", code, errOut)
	}
	var statuses []struct {
		Name      string `json:"name"`
		CA        bool   `json:"ca"`
		WillRenew bool   `json:"will_renew"`
		SignedBy  string `json:"signed_by"`
	}
	if err := json.Unmarshal([]byte(out), &statuses); err != nil {
		t.Fatal(err)
	}
	var leaves int
	for _, s := range statuses {
		if s.SignedBy == "" {
			t.Errorf("%s: no signing CA", s.Name)
		}
		if !s.CA {
			leaves++
			if !s.WillRenew {
				t.Errorf("%s is not marked for renewal", s.Name)
			}
		} else if s.WillRenew {
			t.Errorf("CA %s marked for renewal; CAs are never renewed automatically", s.Name)
		}
	}
	// 7 leaf files, 6 kubeconfigs, 2 kubelet certificates.
	if leaves != 15 {
		t.Errorf("%d leaf certificates listed, want 15", leaves)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, _ := runCLI(t, "completion", shell)
		if code != exitOK || !strings.Contains(out, "ecom-agent") {
			t.Errorf("completion %s: exit %d", shell, code)
		}
	}
}

// A node without its certificates fails the check: a monitor running
// check-expiration must not pass on a node that has none.
func TestCheckExpirationMissingCertificatesFail(t *testing.T) {
	noConfig := filepath.Join(t.TempDir(), "none.toml")
	code, out, errOut := runCLI(t, "certs", "check-expiration", "--config", noConfig, "--root", filepath.Join(t.TempDir(), "nonexistent"))
	if code != exitFailure {
		t.Errorf("nothing there: exit %d, want %d\n%s%s", code, exitFailure, out, errOut)
	}
	for _, want := range []string{"ca ", "MISSING", "kubelet-client-current.pem"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "no certificate found under") || !strings.Contains(errOut, "run `ecom-agent join`") {
		t.Errorf("stderr does not say what to run: %s", errOut)
	}

	// A rendered control-plane node that lost two certificates.
	cfg := writeConfig(t, testConfigTOML)
	root := t.TempDir()
	if code, _, errOut := runCLI(t, "render", "--config", cfg, "--root", root); code != exitOK {
		t.Fatalf("render: %d %s", code, errOut)
	}
	for _, p := range []string{"etc/kubernetes/pki/etcd/peer.crt", "etc/kubernetes/admin.conf"} {
		if err := os.Remove(filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut = runCLI(t, "certs", "check-expiration", "--config", cfg, "--root", root, "-o", "json")
	if code != exitFailure || !strings.Contains(errOut, "2 certificate(s) missing (etcd/peer, /etc/kubernetes/admin.conf)") ||
		!strings.Contains(errOut, "systemctl restart ecom-agent") {
		t.Errorf("two missing: exit %d, stderr %q", code, errOut)
	}
	var rows []struct {
		Name    string `json:"name"`
		Missing bool   `json:"missing"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, r := range rows {
		if r.Missing {
			missing = append(missing, r.Name)
		}
	}
	if strings.Join(missing, " ") != "etcd/peer /etc/kubernetes/admin.conf" || len(rows) != 18 {
		t.Errorf("%d rows, missing %v; want 18 rows, etcd/peer and admin.conf missing", len(rows), missing)
	}

	// A worker that has not joined misses the CA's, its kubelet's and its
	// kube-proxy's.
	worker := writeConfig(t, "cluster_name = \"shop-test\"\nrole = \"worker\"\nnode_name = \"w-1\"\nadvertise_address = \"10.77.0.21\"\n"+
		"[join]\ntoken = \"EA1::sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef::0123456789ab.0123456789abcdef0123456789abcdef\"\nservers = [\"10.77.0.11\"]\n")
	code, out, errOut = runCLI(t, "certs", "check-expiration", "--config", worker, "--root", t.TempDir())
	if code != exitFailure || strings.Count(out, "MISSING") != 4 || !strings.Contains(out, "/var/lib/kube-proxy/client.pem") || strings.Contains(out, "etcd/") {
		t.Errorf("worker: exit %d\n%s%s", code, out, errOut)
	}
}
