package bootstrap

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
)

func render(t *testing.T, cfgExtra string, root *hostfs.Root) []Written {
	t.Helper()
	r := NewRenderer(testConfig(t, cfgExtra), root, discardLogger())
	w, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return w
}

// snapshot records every file's bytes, mode and mtime under a root.
type fileState struct {
	data  string
	mode  fs.FileMode
	mtime time.Time
}

func snapshot(t *testing.T, root *hostfs.Root) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(root.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(p, root.Dir()+"/")
		out[rel] = fileState{string(data), fi.Mode(), fi.ModTime()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRenderControlPlaneTree(t *testing.T) {
	root := testRoot(t)
	written := render(t, "", root)
	want := []string{
		"/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/ca.key",
		"/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/pki/etcd/ca.key",
		"/etc/kubernetes/pki/front-proxy-ca.crt", "/etc/kubernetes/pki/front-proxy-ca.key",
		"/etc/kubernetes/pki/sa.key", "/etc/kubernetes/pki/sa.pub",
		"/etc/kubernetes/pki/apiserver.crt", "/etc/kubernetes/pki/apiserver.key",
		"/etc/kubernetes/pki/apiserver-kubelet-client.crt", "/etc/kubernetes/pki/apiserver-etcd-client.crt",
		"/etc/kubernetes/pki/front-proxy-client.crt", "/etc/kubernetes/pki/etcd/server.crt",
		"/etc/kubernetes/pki/etcd/peer.crt", "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
		AdminKubeconfig, SuperAdminKubeconfig, ControllerManagerKubeconfig, SchedulerKubeconfig, KubeletKubeconfig,
		KubeletClientCert, KubeletServerCert,
		EtcdConfigFile, EncryptionConfigFile, AuditPolicyFile, KubeletConfigFile,
		"/etc/systemd/system/etcd.service", "/etc/systemd/system/kube-apiserver.service",
		"/etc/systemd/system/kube-controller-manager.service", "/etc/systemd/system/kube-scheduler.service",
		"/etc/systemd/system/kubelet.service", AgentUnitFile,
	}
	files := snapshot(t, root)
	for _, p := range want {
		if _, ok := files[p]; !ok {
			t.Errorf("render did not write %s", p)
		}
	}
	for _, w := range written {
		if w.Action != "created" {
			t.Errorf("first render: %s %s, want created", w.Path, w.Action)
		}
	}
	// Secrets are readable by root only.
	for p, f := range files {
		secret := strings.HasSuffix(p, ".key") || strings.HasSuffix(p, ".conf") ||
			strings.HasPrefix(p, KubeletPKIDir) || p == EncryptionConfigFile || p == EtcdConfigFile
		if secret && f.mode.Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, f.mode.Perm())
		}
		if strings.HasSuffix(p, ".crt") && f.mode.Perm() != 0o644 {
			t.Errorf("%s has mode %v, want 0644", p, f.mode.Perm())
		}
	}
	for _, dir := range []string{EtcdDataDir, KubeletPKIDir, "/etc/kubernetes/encryption"} {
		fi, err := root.Stat(dir)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want a 0700 directory", dir, fi, err)
		}
	}
}

func TestRenderTwiceChangesNothing(t *testing.T) {
	root := testRoot(t)
	render(t, "", root)
	before := snapshot(t, root)
	time.Sleep(10 * time.Millisecond) // a rewrite would show in the mtimes
	written := render(t, "", root)
	for _, w := range written {
		if w.Action != "unchanged" {
			t.Errorf("second render: %s %s (%s), want unchanged", w.Path, w.Action, w.Note)
		}
	}
	after := snapshot(t, root)
	if len(after) != len(before) {
		t.Errorf("second render changed the file count: %d -> %d", len(before), len(after))
	}
	for p, b := range before {
		a := after[p]
		if a.data != b.data || a.mode != b.mode || !a.mtime.Equal(b.mtime) {
			t.Errorf("%s changed on the second render", p)
		}
	}
}

// The agent's unit installed by the package belongs to dpkg: a render
// writes one where none is installed and never rewrites it.
func TestRenderLeavesThePackagedAgentUnit(t *testing.T) {
	root := testRoot(t)
	packaged := []byte("# the package's ecom-agent.service\n[Service]\nExecStart=/usr/bin/ecom-agent run\n")
	if _, err := root.WriteFile(AgentUnitFile, packaged, 0o644); err != nil {
		t.Fatal(err)
	}
	render(t, "", root)
	got, err := root.ReadFile(AgentUnitFile)
	if err != nil || string(got) != string(packaged) {
		t.Errorf("the packaged unit was rewritten (%v):\n%s", err, got)
	}
}

// TestRenderReissuesOnlyWhatChanged adds an API server SAN: the API
// server certificate is re-issued and nothing else changes.
func TestRenderReissuesOnlyWhatChanged(t *testing.T) {
	root := testRoot(t)
	render(t, "", root)
	before := snapshot(t, root)
	cfgExtra := strings.Replace(baseConfig, `"192.0.2.10"]`, `"192.0.2.10", "shop.example.net"]`, 1)
	r := NewRenderer(mustParse(t, cfgExtra), root, discardLogger())
	written, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	changed := map[string]string{}
	for _, w := range written {
		if w.Action != "unchanged" {
			changed[w.Path] = w.Note
		}
	}
	for _, p := range []string{"/etc/kubernetes/pki/apiserver.crt", "/etc/kubernetes/pki/apiserver.key"} {
		if note, ok := changed[p]; !ok || !strings.Contains(note, "shop.example.net") {
			t.Errorf("%s: changed=%v note %q, want re-issued naming the new SAN", p, ok, note)
		}
		delete(changed, p)
	}
	if len(changed) != 0 {
		t.Errorf("other files changed too: %v", changed)
	}
	after := snapshot(t, root)
	for _, ca := range []string{"/etc/kubernetes/pki/ca.crt", "/etc/kubernetes/pki/ca.key"} {
		if before[ca] != after[ca] {
			t.Errorf("%s changed", ca)
		}
	}
}

func mustParse(t *testing.T, toml string) *configT {
	t.Helper()
	return parseConfig(t, toml)
}

// TestRenderedLeavesPassOpenSSL runs `openssl verify` on every leaf file
// against its CA, with the purpose the leaf is for.
func TestRenderedLeavesPassOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	root := testRoot(t)
	render(t, "", root)
	leaves := map[string]string{
		"apiserver":                "ca",
		"apiserver-kubelet-client": "ca",
		"apiserver-etcd-client":    "etcd/ca",
		"front-proxy-client":       "front-proxy-ca",
		"etcd/server":              "etcd/ca",
		"etcd/peer":                "etcd/ca",
		"etcd/healthcheck-client":  "etcd/ca",
	}
	for leaf, ca := range leaves {
		purpose := "sslclient"
		if leaf == "apiserver" || leaf == "etcd/server" {
			purpose = "sslserver"
		}
		out, err := exec.Command("openssl", "verify", "-purpose", purpose,
			"-CAfile", root.Path(pki.CertPath(ca)), root.Path(pki.CertPath(leaf))).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": OK") {
			t.Errorf("openssl verify %s: %v\n%s", leaf, err, out)
		}
	}
	// The kubeconfigs' embedded client certificates chain to the cluster CA.
	caPEM, _ := root.ReadFile(pki.CertPath("ca"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, kc := range []string{AdminKubeconfig, SuperAdminKubeconfig, ControllerManagerKubeconfig, SchedulerKubeconfig} {
		data, _ := root.ReadFile(kc)
		certPEM, _, err := EmbeddedCredentials(data)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(certPEM)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", kc, err)
		}
	}
}

// TestRenderRefusesUnreadableEncryptionConfig guards the Secrets already
// stored: a broken encryption config is an error, never a new key.
func TestRenderRefusesUnreadableEncryptionConfig(t *testing.T) {
	root := testRoot(t)
	render(t, "", root)
	if _, err := root.WriteFile(EncryptionConfigFile, []byte("garbage: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := NewRenderer(testConfig(t, ""), root, discardLogger())
	_, err := r.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "phase control-plane-config") || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("got %v, want a refusal from the control-plane-config phase", err)
	}
	data, _ := root.ReadFile(EncryptionConfigFile)
	if string(data) != "garbage: [\n" {
		t.Fatal("the broken encryption config was overwritten")
	}
}

// TestRenderRefusesMismatchedCA checks the CA-never-overwritten rule end
// to end: a CA key that does not match the certificate stops the pki
// phase, names the file, and leaves both files as they were.
func TestRenderRefusesMismatchedCA(t *testing.T) {
	root := testRoot(t)
	render(t, "", root)
	other := testRoot(t)
	render(t, "", other)
	foreignKey, _ := other.ReadFile(pki.KeyPath("etcd/ca"))
	if _, err := root.WriteFile(pki.KeyPath("etcd/ca"), foreignKey, 0o600); err != nil {
		t.Fatal(err)
	}
	certBefore, _ := root.ReadFile(pki.CertPath("etcd/ca"))
	r := NewRenderer(testConfig(t, ""), root, discardLogger())
	_, err := r.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "phase pki") || !strings.Contains(err.Error(), "etcd/ca") {
		t.Fatalf("got %v, want a pki phase error naming etcd/ca", err)
	}
	certAfter, _ := root.ReadFile(pki.CertPath("etcd/ca"))
	keyAfter, _ := root.ReadFile(pki.KeyPath("etcd/ca"))
	if string(certAfter) != string(certBefore) || string(keyAfter) != string(foreignKey) {
		t.Fatal("the CA files were changed")
	}
}

// TestRenderWorkerHoldsNoCAKey: a worker renders only what needs no CA.
func TestRenderWorkerHoldsNoCAKey(t *testing.T) {
	root := testRoot(t)
	toml := workerConfig
	r := NewRenderer(parseConfig(t, toml), root, discardLogger())
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	files := snapshot(t, root)
	for p := range files {
		if strings.HasSuffix(p, ".key") || strings.HasPrefix(p, PKIDir) {
			t.Errorf("worker got %s", p)
		}
	}
	for _, p := range []string{KubeletConfigFile, "/etc/systemd/system/kubelet.service", AgentUnitFile} {
		if _, ok := files[p]; !ok {
			t.Errorf("worker did not get %s", p)
		}
	}
	if _, ok := files["/etc/systemd/system/etcd.service"]; ok {
		t.Error("worker got an etcd unit")
	}
}

// control_plane_endpoint is admin.conf's server and a SAN of the API
// server's certificate; super-admin.conf, the break-glass identity, keeps
// the node's own address, and the node's components the local one. Set
// later, it re-issues the API server's certificate and rewrites
// admin.conf, nothing else.
func TestRenderControlPlaneEndpoint(t *testing.T) {
	root := testRoot(t)
	render(t, "", root)
	r := NewRenderer(mustParse(t, `control_plane_endpoint = "k8s.shop.example"`+baseConfig), root, discardLogger())
	written, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, w := range written {
		if w.Action != "unchanged" {
			changed = append(changed, w.Path)
		}
	}
	slices.Sort(changed)
	if want := []string{AdminKubeconfig, "/etc/kubernetes/pki/apiserver.crt", "/etc/kubernetes/pki/apiserver.key"}; !slices.Equal(changed, want) {
		t.Errorf("changed %v, want %v", changed, want)
	}
	for kc, server := range map[string]string{
		AdminKubeconfig:             "https://k8s.shop.example:6443",
		SuperAdminKubeconfig:        "https://10.77.0.11:6443",
		ControllerManagerKubeconfig: "https://127.0.0.1:6443",
	} {
		data, _ := root.ReadFile(kc)
		if !strings.Contains(string(data), "server: "+server+"\n") {
			t.Errorf("%s does not name %s:\n%s", kc, server, data)
		}
	}
	data, _ := root.ReadFile("/etc/kubernetes/pki/apiserver.crt")
	block, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("k8s.shop.example"); err != nil {
		t.Errorf("the API server's certificate: %v", err)
	}
	if got := ClusterAPIServer(mustParse(t, `control_plane_endpoint = "[fd00::5]:443"`+baseConfig)); got != "https://[fd00::5]:443" {
		t.Errorf("an IPv6 endpoint with a port: %s", got)
	}
}

// The control plane's VIP is admin.conf's server when no endpoint is
// named, and in the API server's certificate either way.
func TestRenderVIP(t *testing.T) {
	const vip = "\n[control_plane_vip]\naddress = \"10.77.0.200\"\n"
	for _, tc := range []struct{ name, config, server string }{
		{"the VIP alone", baseConfig + vip, "https://10.77.0.200:6443"},
		{"the VIP and an endpoint", `control_plane_endpoint = "k8s.shop.example"` + baseConfig + vip, "https://k8s.shop.example:6443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := testRoot(t)
			if _, err := NewRenderer(mustParse(t, tc.config), root, discardLogger()).Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			data, _ := root.ReadFile(AdminKubeconfig)
			if !strings.Contains(string(data), "server: "+tc.server+"\n") {
				t.Errorf("admin.conf does not name %s:\n%s", tc.server, data)
			}
			data, _ = root.ReadFile("/etc/kubernetes/pki/apiserver.crt")
			block, _ := pem.Decode(data)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if err := cert.VerifyHostname("10.77.0.200"); err != nil {
				t.Errorf("the API server's certificate: %v", err)
			}
		})
	}
}
