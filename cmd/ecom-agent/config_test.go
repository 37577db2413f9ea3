package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecom-platform/ecom-agent/config"
)

// config validate lists every problem at once, writes nothing and exits
// 78; a valid file exits 0 with what it describes.
func TestConfigValidate(t *testing.T) {
	code, out, errOut := runCLI(t, "config", "validate", "--config", writeConfig(t, testConfigTOML))
	if code != exitOK || !strings.Contains(out, ": valid: control-plane node cp-1 (10.77.0.11) of cluster shop-test, Kubernetes v") {
		t.Errorf("valid: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	bad := writeConfig(t, `cluster_name = "shop"
role = "control-plane"
node_name = "cp-1"
advertise_address = "10.77.0.11"
expect = 4
cluster_secret_file = "/etc/ecom-agent/cluster-secret"
control_plane_key = "test-cp-key-fedcba9876543210fedcba98765"
[apiserver]
prot = 6443
`)
	code, out, errOut = runCLI(t, "config", "validate", "--config", bad, "--root", t.TempDir())
	if code != exitConfig || out != "" {
		t.Errorf("invalid: exit %d, stdout %q", code, out)
	}
	for _, want := range []string{`config.toml:5: key "expect"`, `config.toml:6: key "cluster_secret_file"`, "/etc/ecom-agent/cluster-secret does not exist", `config.toml:9: key "apiserver.prot"`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "config", "validate", "--config", filepath.Join(t.TempDir(), "none.toml")); code != exitConfig {
		t.Errorf("missing file: exit %d, %s", code, errOut)
	}
	for _, args := range [][]string{{"--root", "relative"}, {"--host-address", "ten"}, {"extra"}} {
		if code, _, errOut := runCLI(t, append([]string{"config", "validate", "--config", bad}, args...)...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d; %s", args, code, exitUsage, errOut)
		}
	}
}

// print-defaults prints the packaged example, and validate accepts it for
// a host named on the command line with the secrets under --root.
func TestConfigPrintDefaultsValidates(t *testing.T) {
	code, out, errOut := runCLI(t, "config", "print-defaults")
	if code != exitOK || out != string(config.Example) || !strings.Contains(out, "# expect = 3") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	secrets := t.TempDir()
	dir := filepath.Join(secrets, "etc/ecom-agent")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, secret := range map[string]string{"cluster-secret": "example-secret-0123456789abcdef0123456789", "control-plane-key": "example-cp-key-fedcba9876543210fedcba98"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut = runCLI(t, "config", "validate", "--config", writeConfig(t, out), "--root", secrets,
		"--hostname", "Shop-CP-1", "--host-address", "10.20.0.11")
	if code != exitOK || !strings.Contains(out, "valid: control-plane node shop-cp-1 (10.20.0.11) of cluster shop-prod") {
		t.Errorf("the example: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
