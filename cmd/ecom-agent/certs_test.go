package main

import (
	"encoding/json"
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
