//go:build e2e

package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// kubectl runs the pinned kubectl on a host with admin.conf.
func kubectl(h *testhost.Host, args ...string) (string, error) {
	res, err := run(h, append([]string{kubeBinDir + "/kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "--request-timeout=10s"}, args...)...)
	if err != nil {
		return "", fmt.Errorf("kubectl %s on %s: %v: %s", strings.Join(args, " "), h.Name(), err, res.Stderr)
	}
	return strings.TrimSpace(res.Stdout), nil
}

// seedLeaseHolder is the node holding the seeding Lease, as h's API says.
func seedLeaseHolder(h *testhost.Host) (string, error) {
	return kubectl(h, "get", "lease", "-n", "kube-system", "ecom-agent-seeder", "-o", "jsonpath={.spec.holderIdentity}")
}

// TestControlPlaneAndSeeding: three control-plane hosts, the same config
// on each, `ecom-agent join` on all at once: every host ends with a ready
// kube-apiserver (and its controller manager and scheduler) on a 3-member
// etcd, and exactly one agent seeds the platform. When the seeding node
// dies, another takes over the Lease and applies a changed manifest.
func TestControlPlaneAndSeeding(t *testing.T) {
	env := testhost.New(t, hostOptions(t, "c"))
	hosts := env.Start(t, 3)
	onEach(hosts, func(h *testhost.Host) { install(t, h, joinConfig(h, hosts, 3)) })

	onEach(hosts, func(h *testhost.Host) {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		res, err := h.Run(ctx, "ecom-agent", "join", "--timeout", "5m")
		if err != nil {
			t.Errorf("join on %s: %v\n%s\n%s", h.Name(), err, res.Stdout, res.Stderr)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("the API is ready on every host", func(t *testing.T) {
		for _, h := range hosts {
			st, code := statusJSON(t, h)
			if st.ControlPlane == nil || !st.ControlPlane.Ready {
				t.Errorf("%s: control plane %+v (exit %d, reasons %v)", h.Name(), st.ControlPlane, code, st.Reasons)
			}
			for _, u := range []string{"kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service", "kube-proxy.service"} {
				if err := activeIs(h, u, "active")(); err != nil {
					t.Error(err)
				}
			}
			if out, err := kubectl(h, "get", "--raw", "/readyz"); err != nil || out != "ok" {
				t.Errorf("%s /readyz: %q %v", h.Name(), out, err)
			}
		}
		_, voters, _, err := formed(t, hosts[0])
		if err != nil || voters != 3 {
			t.Errorf("etcd: %d voters, %v", voters, err)
		}
	})

	var seeder *testhost.Host
	t.Run("exactly one agent seeds the platform", func(t *testing.T) {
		await(t, 3*time.Minute, "a seeding report with no failure on every host", func() error {
			for _, h := range hosts {
				st, _ := statusJSON(t, h)
				if st.Seed == nil || st.Seed.Seeder == "" || st.Seed.Counts["failed"] != 0 {
					return fmt.Errorf("%s: seed %+v", h.Name(), st.Seed)
				}
				if st.Verdict != "healthy" {
					return fmt.Errorf("%s: %s: %v", h.Name(), st.Verdict, st.Reasons)
				}
			}
			return nil
		})
		holder, err := seedLeaseHolder(hosts[0])
		if err != nil {
			t.Fatal(err)
		}
		leaders := 0
		for _, h := range hosts {
			st, code := statusJSON(t, h)
			if code != 0 {
				t.Errorf("status on %s exits %d: %v", h.Name(), code, st.Reasons)
			}
			if st.Seed.Seeder != holder {
				t.Errorf("%s shows seeder %s, the Lease says %s", h.Name(), st.Seed.Seeder, holder)
			}
			if st.Seed.Leader {
				leaders++
				seeder = h
			}
			// Only the seeder ever created an object.
			journal := h.MustRun(t, "journalctl", "-u", "ecom-agent.service", "--no-pager", "-o", "cat")
			created := strings.Contains(journal, "object created")
			if created != (h.Name() == holder) {
				t.Errorf("%s (Lease holder %s) logged object creations: %v", h.Name(), holder, created)
			}
		}
		if leaders != 1 || seeder == nil || seeder.Name() != holder {
			t.Fatalf("%d nodes say they seed; the Lease holder is %s", leaders, holder)
		}
		out, err := kubectl(hosts[0], "get", "all", "-n", "ecommerce", "-o", "name")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"deployment.apps/backend", "deployment.apps/frontend", "statefulset.apps/postgresql", "service/postgresql-service", "service/redis-service", "horizontalpodautoscaler.autoscaling/backend"} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl get all -n ecommerce lacks %s:\n%s", want, out)
			}
		}
		t.Logf("kubectl get all -n ecommerce:\n%s", out)
	})
	if seeder == nil {
		t.FailNow()
	}

	t.Run("kube-proxy programs the seeded Services on every host", func(t *testing.T) {
		// The API server's Service has endpoints (NAT rules); the seeded
		// kube-dns has none yet (no kubelet runs its pods), so kube-proxy
		// rejects its traffic at once instead of letting it time out.
		for _, h := range hosts {
			await(t, 2*time.Minute, "kube-proxy's rules on "+h.Name(), func() error {
				nat, err := run(h, "iptables", "-t", "nat", "-S", "KUBE-SERVICES")
				if err != nil {
					return fmt.Errorf("%v: %s", err, nat.Stderr)
				}
				filter, err := run(h, "iptables", "-t", "filter", "-S", "KUBE-SERVICES")
				if err != nil {
					return fmt.Errorf("%v: %s", err, filter.Stderr)
				}
				if !strings.Contains(nat.Stdout, "-d 10.96.0.1/32") || !strings.Contains(filter.Stdout, `-d 10.96.0.10/32 -p tcp -m comment --comment "kube-system/kube-dns:dns-tcp has no endpoints"`) {
					return fmt.Errorf("KUBE-SERVICES on %s:\nnat:\n%s\nfilter:\n%s", h.Name(), nat.Stdout, filter.Stdout)
				}
				return nil
			})
		}
	})

	t.Run("another node takes over seeding when the seeder dies", func(t *testing.T) {
		var rest []*testhost.Host
		for _, h := range hosts {
			if h != seeder {
				rest = append(rest, h)
			}
		}
		// An admin adds a manifest on every control-plane node; the
		// seeder dies before it applies it.
		if err := seeder.Kill(); err != nil {
			t.Fatal(err)
		}
		extra := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e2e-extra\n  namespace: ecommerce\ndata:\n  added: after-the-seeder-died\n"
		for _, h := range rest {
			if err := h.WriteFile("/etc/ecom-agent/manifests.d/95-e2e-extra.yaml", []byte(extra), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var holder string
		await(t, 3*time.Minute, "a new seeder applying the new manifest", func() error {
			var err error
			holder, err = seedLeaseHolder(rest[0])
			if err != nil {
				return err
			}
			if holder == seeder.Name() || holder == "" {
				return fmt.Errorf("the Lease is still held by %q", holder)
			}
			out, err := kubectl(rest[0], "get", "configmap", "-n", "ecommerce", "e2e-extra", "-o", "jsonpath={.data.added}")
			if err != nil {
				return err
			}
			if out != "after-the-seeder-died" {
				return fmt.Errorf("e2e-extra holds %q", out)
			}
			return nil
		})
		t.Logf("%s took over seeding from %s", holder, seeder.Name())
	})
}
