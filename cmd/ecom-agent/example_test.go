package main

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
)

// TestExampleConfigRendersAVerifiableTree is the foundation's "done when":
// the commented example config renders the full tree, and openssl accepts
// every leaf against its CA.
func TestExampleConfigRendersAVerifiableTree(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	data, err := os.ReadFile("../../packaging/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	secretRoot := t.TempDir()
	secretFile := filepath.Join(secretRoot, "etc/ecom-agent/cluster-secret")
	if err := os.MkdirAll(filepath.Dir(secretFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, []byte("example-secret-0123456789abcdef0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(secretFile), "control-plane-key"), []byte("example-cp-key-fedcba9876543210fedcba98\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(data, "config.toml", config.LoadOptions{
		Hostname:  func() (string, error) { return "shop-cp-1", nil },
		HostAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("10.20.0.11")}, nil },
		Root:      secretRoot,
	})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := hostfs.New(t.TempDir())
	written, err := bootstrap.NewRenderer(cfg, root, discard()).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 6 CA files, 2 service-account keys, 14 leaf files, 7 kubeconfigs,
	// 2 kubelet certificates, 6 component configs (containerd's
	// included), 8 units.
	if len(written) != 45 {
		t.Errorf("rendered only %d files", len(written))
	}
	var leaves int
	for _, w := range written {
		p := w.Path
		if !strings.HasPrefix(p, pki.Dir) || !strings.HasSuffix(p, ".crt") || strings.HasSuffix(p, "ca.crt") {
			continue
		}
		leaves++
		ca := "ca"
		switch {
		case strings.HasPrefix(p, pki.Dir+"/etcd/"), strings.HasSuffix(p, "apiserver-etcd-client.crt"):
			ca = "etcd/ca"
		case strings.HasSuffix(p, "front-proxy-client.crt"):
			ca = "front-proxy-ca"
		}
		out, err := exec.Command("openssl", "verify", "-CAfile", root.Path(pki.CertPath(ca)), root.Path(p)).CombinedOutput()
		if err != nil {
			t.Errorf("openssl verify %s: %v\n%s", p, err, out)
		}
	}
	if leaves != 7 {
		t.Errorf("verified %d leaf files, want 7", leaves)
	}
}
