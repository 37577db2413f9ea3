//go:build e2e

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// platformArchives are the platform's image archives (make
// platform-images; $ECOM_PLATFORM_IMAGES names their directory).
func platformArchives(t *testing.T) []string {
	t.Helper()
	dir := os.Getenv("ECOM_PLATFORM_IMAGES")
	if dir == "" {
		t.Fatal("$ECOM_PLATFORM_IMAGES is not set: run the e2e suite with `make e2e`, which builds the platform's images")
	}
	archives, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil || len(archives) == 0 {
		t.Fatalf("no image archive in %s (%v)", dir, err)
	}
	return archives
}

// copyPlatformImages drops the platform's archives in h's images
// directory, where the agent imports them before the kubelet starts.
func copyPlatformImages(t *testing.T, h *testhost.Host, archives []string) {
	for _, a := range archives {
		if err := h.CopyIn(a, "/var/lib/ecom-agent/images/"+filepath.Base(a), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// testPlatform checks the platform the agent seeded, running from the
// images built here, as the seeds' own checks do: every check of
// `ecom-agent verify` passes (every pod Ready, the backend's and
// frontend's answers, psql by peer, Prometheus's targets up), the
// runbooks' queries (-l app=ecommerce,component=...) find Ready pods, the
// backend lists the sample products and takes an order, the frontend
// serves its page and the API through its proxy, and psql answers the
// seeds' query.
func testPlatform(t *testing.T, cp *testhost.Host) {
	await(t, 12*time.Minute, "ecom-agent verify (every check)", func() error {
		res, err := run(cp, "ecom-agent", "verify")
		if err != nil {
			return fmt.Errorf("%v\n%s%s", err, res.Stdout, res.Stderr)
		}
		return nil
	})
	t.Run("the runbooks' label queries find Ready pods of every component", func(t *testing.T) {
		for _, c := range []string{"backend", "frontend", "database", "cache", "monitoring"} {
			sel := "app=ecommerce,component=" + c
			await(t, 2*time.Minute, "kubectl get pods -n ecommerce -l "+sel+": every pod Running and Ready", func() error {
				return podsRunningReady(cp, "ecommerce", sel)
			})
		}
	})
	t.Run("the NetworkPolicies let through exactly the platform's paths", func(t *testing.T) {
		testPlatformPaths(t, cp)
	})
	proxy := func(svc, port, path string) string {
		return "/api/v1/namespaces/ecommerce/services/http:" + svc + ":" + port + "/proxy" + path
	}
	t.Run("the backend lists the sample products and takes an order", func(t *testing.T) {
		out, err := kubectl(cp, "get", "--raw", proxy("backend-service", "http", "/api/products"))
		if err != nil {
			t.Fatal(err)
		}
		var products []struct {
			ID    int    `json:"id"`
			Name  string `json:"name"`
			Stock int    `json:"stock"`
		}
		if err := json.Unmarshal([]byte(out), &products); err != nil {
			t.Fatalf("/api/products: %v\n%s", err, out)
		}
		var names []string
		for _, p := range products {
			names = append(names, p.Name)
		}
		for _, want := range []string{"Laptop", "Mouse", "Keyboard"} {
			if !slices.Contains(names, want) {
				t.Errorf("/api/products has no %s: %s", want, out)
			}
		}
		if len(products) == 0 {
			return
		}
		order := fmt.Sprintf(`{"product_id": %d, "quantity": 1}`, products[0].ID)
		if err := cp.WriteFile("/root/order.json", []byte(order), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err = kubectl(cp, "create", "--raw", proxy("backend-service", "http", "/api/orders"), "-f", "/root/order.json")
		if err != nil || !strings.Contains(out, `"product_id"`) {
			t.Fatalf("POST /api/orders: %v\n%s", err, out)
		}
		out, err = kubectl(cp, "get", "--raw", proxy("backend-service", "http", "/api/orders"))
		if err != nil || !strings.Contains(out, fmt.Sprintf(`"product_id":%d`, products[0].ID)) && !strings.Contains(out, fmt.Sprintf(`"product_id": %d`, products[0].ID)) {
			t.Errorf("the order is not listed: %v\n%s", err, out)
		}
	})
	t.Run("the frontend serves its page and the API through its proxy", func(t *testing.T) {
		out, err := kubectl(cp, "get", "--raw", proxy("frontend-service", "http", "/"))
		if err != nil || !strings.Contains(strings.ToLower(out), "<html") {
			t.Errorf("GET /: %v\n%.300s", err, out)
		}
		out, err = kubectl(cp, "get", "--raw", proxy("frontend-service", "http", "/api/products"))
		if err != nil || !strings.Contains(out, "Laptop") {
			t.Errorf("GET /api/products through the frontend: %v\n%.300s", err, out)
		}
	})
	t.Run("psql -U postgres in the database pod, as the seeds run it", func(t *testing.T) {
		out, err := kubectl(cp, "-n", "ecommerce", "exec", "postgresql-0", "-c", "postgresql", "--",
			"psql", "-U", "postgres", "-d", "ecommerce", "-tAc", "SELECT count(*) FROM products WHERE name IN ('Laptop', 'Mouse', 'Keyboard');")
		if err != nil || strings.TrimSpace(out) != "3" {
			t.Errorf("psql: %v\n%s", err, out)
		}
		// Remote connections still need the password.
		out, err = kubectl(cp, "-n", "ecommerce", "exec", "postgresql-0", "-c", "postgresql", "--",
			"psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "ecommerce", "-w", "-c", "SELECT 1;")
		if err == nil {
			t.Errorf("psql over TCP without a password got in:\n%s", out)
		}
	})
}

// podsRunningReady lists the pods of namespace ns matching selector, as a
// runbook does (kubectl get pods -l), and says what is wrong unless there
// is at least one and every one is Running and Ready.
func podsRunningReady(h *testhost.Host, ns, selector string) error {
	out, err := kubectl(h, "get", "pods", "-n", ns, "-l", selector, "-o", "json")
	if err != nil {
		return err
	}
	var list corev1.PodList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return fmt.Errorf("kubectl get pods -l %s: %v", selector, err)
	}
	if len(list.Items) == 0 {
		return fmt.Errorf("no pod matches -l %s", selector)
	}
	var bad []string
	for _, p := range list.Items {
		ready := false
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				ready = c.Status == corev1.ConditionTrue
			}
		}
		if p.Status.Phase != corev1.PodRunning || !ready {
			bad = append(bad, fmt.Sprintf("%s (%s, Ready %v)", p.Name, p.Status.Phase, ready))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d pod(s) matching -l %s not Running and Ready: %s", len(bad), len(list.Items), selector, strings.Join(bad, ", "))
	}
	return nil
}
