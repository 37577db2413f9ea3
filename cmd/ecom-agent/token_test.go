package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/internal/etcdtest"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/token"
)

// The cluster name of testConfigTOML.
const testCluster = "shop-test"

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

// useEtcd points the token commands at a real etcd of the test's.
func useEtcd(t *testing.T) *token.Store {
	t.Helper()
	store := token.NewStore(etcdtest.Start(t))
	saved := openTokenStore
	openTokenStore = func(*hostfs.Root, *config.Config) (*token.Store, func(), error) { return store, func() {}, nil }
	t.Cleanup(func() { openTokenStore = saved })
	return store
}

// create makes a token, lists it, and deletes it; the list holds no
// secret, and a deleted token is no longer accepted.
func TestTokenCreateListDelete(t *testing.T) {
	store := useEtcd(t)
	cfg := writeConfig(t, testConfigTOML)
	root, caHash := rootWithCA(t)
	ctx := context.Background()

	code, out, errOut := runCLI(t, "token", "create", "--config", cfg, "--root", root, "--description", "rack 4")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Count(out, "\n") != 1 || errOut != "" {
		t.Errorf("want the token alone on one line, got %q, stderr %q", out, errOut)
	}
	tok, err := token.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if tok.CAHash() != caHash {
		t.Errorf("token pins %s, the CA is %s", tok.CAHash(), caHash)
	}
	rec, err := store.Get(ctx, tok.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Check(tok, token.UsageWorker, time.Now()); err != nil {
		t.Errorf("the created token is not accepted: %v", err)
	}
	if left := time.Until(rec.Expires); left < 23*time.Hour || left > 25*time.Hour {
		t.Errorf("default ttl: expires in %s, want 24h", left)
	}
	if rec.CreatedBy != "cp-1" || rec.Description != "rack 4" {
		t.Errorf("record %+v", rec)
	}

	// JSON, with a ttl; --ttl 0 warns.
	code, out, errOut = runCLI(t, "token", "create", "--config", cfg, "--root", root, "--ttl", "2h", "-o", "json")
	if code != exitOK {
		t.Fatalf("json: exit %d: %s", code, errOut)
	}
	var j tokenJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatal(err)
	}
	if j.ClusterName != testCluster || j.CAHash != caHash || !strings.Contains(j.Token, "::"+j.ID+".") ||
		j.Expires == nil || time.Until(*j.Expires) > 2*time.Hour+time.Minute || time.Until(*j.Expires) < 2*time.Hour-time.Minute {
		t.Errorf("json %+v", j)
	}
	code, out, errOut = runCLI(t, "token", "create", "--config", cfg, "--root", root, "--ttl", "0", "-o", "json")
	if code != exitOK || !strings.Contains(errOut, "never expires") || !strings.Contains(out, `"expires": null`) {
		t.Errorf("--ttl 0: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	code, out, errOut = runCLI(t, "token", "list", "--config", cfg, "--root", root)
	if code != exitOK || strings.Count(out, "\n") != 4 || !strings.Contains(out, tok.ID()) || !strings.Contains(out, "rack 4") ||
		!strings.Contains(out, "never") || strings.Contains(out, tok.String()[len(tok.String())-32:]) {
		t.Errorf("list: exit %d, stdout:\n%s\nstderr %q", code, out, errOut)
	}

	code, out, errOut = runCLI(t, "token", "delete", "--config", cfg, "--root", root, tok.String(), "000000000000")
	if code != exitFailure || !strings.Contains(out, "deleted join token "+tok.ID()) || !strings.Contains(errOut, "000000000000") {
		t.Errorf("delete: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if err := store.Check(ctx, tok, token.UsageWorker, time.Now()); !errors.Is(err, token.ErrUnknown) {
		t.Errorf("a deleted token: %v", err)
	}
	if code, _, _ := runCLI(t, "token", "delete", "--config", cfg, "--root", root); code != exitUsage {
		t.Errorf("delete without an id: exit %d", code)
	}
}

func TestTokenCreateRefuses(t *testing.T) {
	useEtcd(t)
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
