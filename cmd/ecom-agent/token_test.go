package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/token"
)

// The secret and cluster name of testConfigTOML.
const (
	testSecret  = "test-secret-0123456789abcdef0123456789"
	testCluster = "shop-test"
)

// rootWithCA returns a temporary host root holding a cluster CA, and the
// CA's hash.
func rootWithCA(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	root, err := hostfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := pki.NewStore(root, pki.Options{}).EnsureCA(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	return dir, pki.CAHash(a.Cert())
}

func TestTokenCreate(t *testing.T) {
	cfg := writeConfig(t, testConfigTOML)
	root, caHash := rootWithCA(t)

	code, out, errOut := runCLI(t, "token", "create", "--config", cfg, "--root", root)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("want the token alone on one line, got %q", out)
	}
	tok, err := token.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Verify([]byte(testSecret), testCluster, time.Now()); err != nil {
		t.Errorf("created token does not verify: %v", err)
	}
	if tok.CAHash() != caHash {
		t.Errorf("token pins %s, the CA is %s", tok.CAHash(), caHash)
	}
	if left := time.Until(tok.Expires()); left < 23*time.Hour || left > 25*time.Hour {
		t.Errorf("default ttl: expires in %s, want 24h", left)
	}
	if errOut != "" {
		t.Errorf("stderr %q", errOut)
	}

	// verify accepts it, from the command line and from stdin.
	code, out, errOut = runCLI(t, "token", "verify", "--config", cfg, "--root", root, tok.String())
	if code != exitOK || !strings.HasPrefix(out, "valid: token "+tok.ID()) || !strings.Contains(out, caHash) {
		t.Errorf("verify: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var stdout, stderr strings.Builder
	code = run([]string{"token", "verify", "--config", cfg, "--root", root, "-"}, strings.NewReader(tok.String()+"\n"), &stdout, &stderr)
	if code != exitOK || !strings.HasPrefix(stdout.String(), "valid:") {
		t.Errorf("verify from stdin: exit %d, %q %q", code, stdout.String(), stderr.String())
	}

	// JSON, with a ttl.
	code, out, errOut = runCLI(t, "token", "create", "--config", cfg, "--root", root, "--ttl", "2h", "-o", "json")
	if code != exitOK {
		t.Fatalf("json: exit %d: %s", code, errOut)
	}
	var j struct {
		Token       string     `json:"token"`
		ID          string     `json:"id"`
		ClusterName string     `json:"cluster_name"`
		CAHash      string     `json:"ca_hash"`
		Expires     *time.Time `json:"expires"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatal(err)
	}
	if j.ClusterName != testCluster || j.CAHash != caHash || !strings.Contains(j.Token, "::"+j.ID+".") {
		t.Errorf("json %+v", j)
	}
	if j.Expires == nil || time.Until(*j.Expires) > 2*time.Hour+time.Minute || time.Until(*j.Expires) < 2*time.Hour-time.Minute {
		t.Errorf("--ttl 2h: expires %v", j.Expires)
	}

	// --ttl 0: a token that never expires, with a warning.
	code, out, errOut = runCLI(t, "token", "create", "--config", cfg, "--root", root, "--ttl", "0", "-o", "json")
	if code != exitOK || !strings.Contains(errOut, "never expires") || !strings.Contains(out, `"expires": null`) {
		t.Errorf("--ttl 0: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestTokenCreateRefuses(t *testing.T) {
	cfg := writeConfig(t, testConfigTOML)
	root, _ := rootWithCA(t)

	code, out, errOut := runCLI(t, "token", "create", "--config", cfg, "--root", t.TempDir())
	if code != exitFailure || out != "" || !strings.Contains(errOut, "this node has no cluster CA yet") ||
		!strings.Contains(errOut, "create tokens on a control-plane node of a formed cluster") {
		t.Errorf("no CA: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	bad := writeConfig(t, testConfigTOML+"\nbogus = 1\n")
	if code, _, errOut := runCLI(t, "token", "create", "--config", bad, "--root", root); code != exitConfig {
		t.Errorf("invalid config: exit %d, stderr %q", code, errOut)
	}
	missing := filepath.Join(t.TempDir(), "nope.toml")
	if code, _, errOut := runCLI(t, "token", "create", "--config", missing, "--root", root); code != exitConfig {
		t.Errorf("missing config: exit %d, stderr %q", code, errOut)
	}

	for _, args := range [][]string{
		{"-o", "xml"},
		{"--ttl", "-1h"},
		{"--ttl", "tomorrow"},
		{"extra"},
		{"--root", "relative"},
	} {
		code, _, errOut := runCLI(t, append([]string{"token", "create", "--config", cfg, "--root", root}, args...)...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d; stderr %q", args, code, exitUsage, errOut)
		}
	}

	// A CA file that is not a CA is reported, not hashed.
	rootFS, _ := hostfs.New(root)
	if _, err := rootFS.WriteFile(pki.CertPath(string(pki.CA)), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCLI(t, "token", "create", "--config", cfg, "--root", root); code != exitFailure || out != "" {
		t.Errorf("garbage CA: exit %d, stdout %q", code, out)
	}
}

func TestTokenVerifyRefuses(t *testing.T) {
	cfg := writeConfig(t, testConfigTOML)
	root, caHash := rootWithCA(t)
	_, otherHash := rootWithCA(t)
	now := time.Now()
	mk := func(secret, cluster, hash string, ttl time.Duration, at time.Time) string {
		t.Helper()
		tok, err := token.New([]byte(secret), cluster, hash, ttl, at)
		if err != nil {
			t.Fatal(err)
		}
		return tok.String()
	}
	for name, c := range map[string]struct{ tok, want string }{
		"garbage":       {"K10abc::server:xyz", "not an ecom-agent join token: "},
		"other cluster": {mk(testSecret, "shop-prod", caHash, time.Hour, now), "not issued by this cluster (wrong cluster secret or cluster name)"},
		"other secret":  {mk("another-secret-0123456789abcdef0123", testCluster, caHash, time.Hour, now), "not issued by this cluster"},
		"expired":       {mk(testSecret, testCluster, caHash, time.Hour, now.Add(-3*time.Hour)), "ecom-agent token create"},
		"other CA":      {mk(testSecret, testCluster, otherHash, time.Hour, now), "but this node's cluster CA is " + caHash},
	} {
		code, out, errOut := runCLI(t, "token", "verify", "--config", cfg, "--root", root, c.tok)
		if code != exitFailure || out != "" || !strings.HasPrefix(errOut, "ecom-agent: ") || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %q", name, code, out, errOut, c.want)
		}
		if strings.Contains(c.tok, "::") && strings.Count(errOut, "\n") != 1 {
			t.Errorf("%s: want one line on stderr, got %q", name, errOut)
		}
	}

	// Without a CA on this node, the MAC alone decides.
	code, out, errOut := runCLI(t, "token", "verify", "--config", cfg, "--root", t.TempDir(), mk(testSecret, testCluster, otherHash, 0, now))
	if code != exitOK || !strings.Contains(out, "never expires") {
		t.Errorf("no local CA: exit %d, %q %q", code, out, errOut)
	}

	if code, _, _ := runCLI(t, "token", "verify", "--config", cfg); code != exitUsage {
		t.Errorf("no token: exit %d, want %d", code, exitUsage)
	}
	if code, _, _ := runCLI(t, "token", "verify", "--config", writeConfig(t, "role = 1\n"), "x"); code != exitConfig {
		t.Errorf("invalid config: exit %d, want %d", code, exitConfig)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/ecom-agent")); err == nil {
		t.Error("token commands wrote node state")
	}
}
