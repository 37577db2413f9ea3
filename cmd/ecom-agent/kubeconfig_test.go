package main

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
)

// kubeconfig issues a certificate for the user and groups asked, for the
// lifetime asked, from the cluster CA, in a kubeconfig for this node's
// API server; it refuses identities that must not leave the cluster, and
// a file that exists.
func TestKubeconfig(t *testing.T) {
	cfg := writeConfig(t, testConfigTOML)
	dir := t.TempDir()
	root, err := hostfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := pki.NewStore(root, pki.Options{}).EnsureCA(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "kubeconfig", "--user", "alice", "--group", "shop-deployers,auditors", "--ttl", "8h", "--config", cfg, "--root", dir)
	if code != exitOK || !strings.Contains(errOut, `issued a client certificate for user "alice"`) {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	kc, err := clientcmd.Load([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	cl := kc.Clusters["shop-test"]
	user := kc.AuthInfos["alice"]
	if cl == nil || cl.Server != "https://10.77.0.11:6443" || user == nil {
		t.Fatalf("kubeconfig %+v", kc)
	}
	cert, err := pki.ParseCertPEM(user.ClientCertificateData)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the certificate does not chain to the cluster CA for client auth: %v", err)
	}
	if cert.Subject.CommonName != "alice" || !slices.Equal(slices.Sorted(slices.Values(cert.Subject.Organization)), []string{"auditors", "shop-deployers"}) {
		t.Errorf("subject %v", cert.Subject)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life < 8*time.Hour-time.Minute || life > 8*time.Hour+10*time.Minute {
		t.Errorf("lifetime %s, want 8h", life)
	}

	// Defaults: admin in the admin group, to a file of mode 0600.
	file := filepath.Join(t.TempDir(), "admin.conf")
	if code, _, errOut := runCLI(t, "kubeconfig", "--out", file, "--server", "https://shop.example:6443", "--config", cfg, "--root", dir); code != exitOK {
		t.Fatalf("--out: exit %d %s", code, errOut)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file %v %v", fi, err)
	}
	if kc, err := clientcmd.LoadFromFile(file); err != nil || kc.Clusters["shop-test"].Server != "https://shop.example:6443" {
		t.Errorf("file %v", err)
	} else if c, _ := pki.ParseCertPEM(kc.AuthInfos["admin"].ClientCertificateData); c == nil || !slices.Equal(c.Subject.Organization, []string{bootstrap.AdminGroup}) {
		t.Errorf("default identity %v", c)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--out", file}, "exists; nothing was written"},
		{[]string{"--group", "system:masters"}, "bypasses RBAC"},
		{[]string{"--user", "system:node:cp-1"}, "system: names belong"},
		{[]string{"--user", "a b"}, "without spaces"},
		{[]string{"--ttl", "9000h"}, "at most 8760h"},
		{[]string{"--server", "http://10.77.0.11:6443"}, "want an https URL"},
	} {
		code, out, errOut := runCLI(t, append([]string{"kubeconfig", "--config", cfg, "--root", dir}, tc.args...)...)
		if code != exitFailure || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %d bytes, %s; want %q", tc.args, code, len(out), errOut, tc.want)
		}
	}
	// A worker holds no CA key.
	worker := writeConfig(t, configtest.WorkerOf(testConfigTOML, "w-1"))
	if code, _, errOut := runCLI(t, "kubeconfig", "--config", worker, "--root", dir); code != exitFailure || !strings.Contains(errOut, "control-plane nodes only") {
		t.Errorf("on a worker: exit %d %s", code, errOut)
	}
}
