//go:build e2e

package integration

import (
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// exportedKubeconfig: `ecom-agent kubeconfig` on a control-plane host
// prints a kubeconfig for the cluster's endpoint (server) that kubectl on
// this machine (outside the hosts) uses: the default identity is
// cluster-admin, a user in a group no binding names is authenticated and
// refused everything. This machine does not resolve the endpoint's name:
// kubectl reaches h's address and checks the API server's certificate
// for that name.
func exportedKubeconfig(t *testing.T, h *testhost.Host, server string) {
	t.Helper()
	dir := t.TempDir()
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	kubectlOut := func(file string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		args = append([]string{"--kubeconfig", file, "--request-timeout=10s",
			"--server", "https://" + net.JoinHostPort(h.Addr().String(), u.Port()), "--tls-server-name", u.Hostname()}, args...)
		cmd := exec.CommandContext(ctx, filepath.Join(kubeBins(t), "kubectl"), args...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	export := func(name string, args ...string) string {
		res, err := run(h, append([]string{"ecom-agent", "kubeconfig", "--ttl", "1h"}, args...)...)
		if err != nil {
			t.Fatalf("ecom-agent kubeconfig %v: %v\n%s", args, err, res.Stderr)
		}
		t.Logf("ecom-agent kubeconfig %s: %s", strings.Join(args, " "), strings.TrimSpace(res.Stderr))
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, []byte(res.Stdout), 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	admin := export("admin.conf", "--user", "e2e-admin")
	if data, err := os.ReadFile(admin); err != nil || !strings.Contains(string(data), "server: "+server+"\n") {
		t.Errorf("the exported kubeconfig does not name %s (%v):\n%s", server, err, data)
	}
	if out, err := kubectlOut(admin, "get", "namespaces", "-o", "name"); err != nil || !strings.Contains(out, "namespace/kube-system") {
		t.Errorf("kubectl get namespaces with the exported admin kubeconfig: %v\n%s", err, out)
	}
	if out, err := kubectlOut(admin, "auth", "can-i", "*", "*", "-A"); err != nil || out != "yes" {
		t.Errorf("the exported admin is not cluster-admin: can-i says %q (%v)", out, err)
	}
	if out, err := kubectlOut(admin, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != "e2e-admin" {
		t.Errorf("whoami: %q %v", out, err)
	}
	nobody := export("nobody.conf", "--user", "e2e-nobody", "--group", "e2e-unbound")
	if out, err := kubectlOut(nobody, "auth", "can-i", "list", "pods", "-A"); err == nil || out != "no" {
		t.Errorf("a user in an unbound group: can-i list pods says %q (%v), want no", out, err)
	}
}

// testEndpoint is TestControlPlaneAndSeeding's control_plane_endpoint.
const testEndpoint = "api.shop.test"

// adminClient is a client of h's API server with its admin.conf, reached
// over the test network.
func adminClient(t *testing.T, h *testhost.Host) *kubernetes.Clientset {
	t.Helper()
	data, err := h.ReadFile("/etc/kubernetes/admin.conf")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	// admin.conf names the cluster's endpoint, a name only the hosts
	// resolve: h's address, checking the certificate for that name.
	if u, err := url.Parse(cfg.Host); err == nil && net.ParseIP(u.Hostname()) == nil {
		cfg.TLSClientConfig.ServerName = u.Hostname()
		cfg.Host = "https://" + net.JoinHostPort(h.Addr().String(), u.Port())
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
