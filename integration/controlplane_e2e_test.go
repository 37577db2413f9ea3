//go:build e2e

package integration

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
	"github.com/ecom-platform/ecom-agent/nodestate"
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
// etcd, and exactly one agent seeds the platform; one agent at a time
// holds the control plane's VIP. When the seeding node
// dies, another takes over the Lease and applies a changed manifest.
func TestControlPlaneAndSeeding(t *testing.T) {
	env := testhost.New(t, hostOptions(t, "c"))
	hosts := env.Start(t, 3)
	// The cluster's endpoint, a name the operator's DNS would give: here
	// each host's /etc/hosts, naming the host itself. And a VIP the
	// agents hold.
	vip := env.SpareAddr()
	onEach(hosts, func(h *testhost.Host) {
		h.MustRun(t, "sh", "-c", "echo '"+h.Addr().String()+" "+testEndpoint+"' >> /etc/hosts")
		install(t, h, "control_plane_endpoint = \""+testEndpoint+"\"\n"+joinConfig(h, hosts, 3)+vipConfig(vip))
	})

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

	t.Run("an exported kubeconfig works from outside the hosts", func(t *testing.T) {
		exportedKubeconfig(t, hosts[0], "https://"+testEndpoint+":6443")
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
			// Health was awaited above; a moment later an API server
			// may briefly report etcd slow on a loaded machine, which is
			// not what this checks.
			st, _ := statusJSON(t, h)
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
		// The API server's Service and the seeded kube-dns (CoreDNS runs
		// from the image the agent ships and imports) both have
		// endpoints, so both have NAT rules.
		for _, h := range hosts {
			await(t, 4*time.Minute, "kube-proxy's rules on "+h.Name(), func() error {
				nat, err := run(h, "iptables", "-t", "nat", "-S", "KUBE-SERVICES")
				if err != nil {
					return fmt.Errorf("%v: %s", err, nat.Stderr)
				}
				if !strings.Contains(nat.Stdout, "-d 10.96.0.1/32") || !strings.Contains(nat.Stdout, "-d 10.96.0.10/32") {
					return fmt.Errorf("KUBE-SERVICES on %s:\nnat:\n%s", h.Name(), nat.Stdout)
				}
				return nil
			})
		}
	})

	t.Run("cluster DNS resolves Services from every host", func(t *testing.T) {
		// A process whose resolv.conf names the cluster DNS, as a pod's
		// does: getent goes through kube-proxy's rules to a CoreDNS pod.
		resolv := "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
		for _, h := range hosts {
			if err := h.WriteFile("/etc/ecom-agent/pod-resolv.conf", []byte(resolv), 0o644); err != nil {
				t.Fatal(err)
			}
			for name, want := range map[string]string{"kubernetes.default.svc.cluster.local": "10.96.0.1", "kube-dns.kube-system": "10.96.0.10"} {
				await(t, 3*time.Minute, h.Name()+" resolving "+name, func() error {
					res, err := run(h, "systemd-run", "--quiet", "--pipe", "--wait", "-p", "BindReadOnlyPaths=/etc/ecom-agent/pod-resolv.conf:/etc/resolv.conf",
						"getent", "hosts", name)
					if err != nil || !strings.HasPrefix(res.Stdout, want+" ") {
						return fmt.Errorf("getent hosts %s: %v: %q %s", name, err, res.Stdout, res.Stderr)
					}
					return nil
				})
			}
		}
	})

	// Renewal on every node at once, as an hourly pass inside the window
	// would start it: the cluster's lock lets one node restart its units
	// at a time, so a client writing to etcd and one reading the API
	// (each with all three endpoints, as a load balancer or etcd's own
	// client would) see every operation through.
	t.Run("renewing every certificate on every node at once keeps etcd and the API serving", func(t *testing.T) {
		etcdCli := etcdOverTLS(t, hosts...)
		apis := make([]*kubernetes.Clientset, len(hosts))
		for i, h := range hosts {
			apis[i] = adminClient(t, h)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		var ops, retried int
		var failures []string
		fail := func(f string, a ...any) {
			mu.Lock()
			failures = append(failures, fmt.Sprintf(f, a...))
			mu.Unlock()
		}
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				// Like an application: one retry after a transient error
				// (a leader change answers "leader changed"), within 10 s.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				key := fmt.Sprintf("/e2e/renewal/%d", i)
				_, err := etcdCli.Put(ctx, key, "v")
				if err != nil {
					mu.Lock()
					retried++
					mu.Unlock()
					_, err = etcdCli.Put(ctx, key, "v")
				}
				if err == nil {
					_, err = etcdCli.Get(ctx, key)
				}
				cancel()
				if err != nil {
					fail("etcd write %d: %v", i, err)
				}
				mu.Lock()
				ops++
				mu.Unlock()
			}
		})
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				var errs []string
				ok := false
				for j := range apis {
					c := apis[(i+j)%len(apis)]
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := c.CoreV1().Namespaces().Get(ctx, "ecommerce", metav1.GetOptions{})
					cancel()
					if err == nil {
						ok = true
						break
					}
					errs = append(errs, err.Error())
				}
				if !ok {
					fail("API read %d: no API server answered: %s", i, strings.Join(errs, "; "))
				}
			}
		})
		since := time.Now()
		onEach(hosts, func(h *testhost.Host) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			res, err := h.Run(ctx, "ecom-agent", "certs", "renew", "all")
			if err != nil || !strings.Contains(res.Stdout, "restarted  etcd.service") || !strings.Contains(res.Stdout, "restarted  kube-apiserver.service") {
				t.Errorf("certs renew all on %s: %v\n%s\n%s", h.Name(), err, res.Stdout, res.Stderr)
			}
		})
		took := time.Since(since)
		close(stop)
		wg.Wait()
		t.Logf("renewal on 3 nodes took %s; %d etcd writes (%d retried once), %d failures", took.Round(time.Second), ops, retried, len(failures))
		for _, f := range failures {
			t.Error(f)
		}
		if ops < 50 {
			t.Errorf("only %d etcd writes in %s", ops, took)
		}
		// One node at a time: each node's span from its first restart to
		// "certificates renewed" overlaps no other's.
		type span struct {
			host       string
			from, till float64
		}
		var spans []span
		for _, h := range hosts {
			out := h.MustRun(t, "journalctl", "-u", "ecom-agent.service", "--no-pager", "-o", "short-unix", "--since", "@"+strconv.FormatInt(since.Unix()-1, 10))
			sp := span{host: h.Name()}
			for _, l := range strings.Split(out, "\n") {
				f := strings.Fields(l)
				if len(f) == 0 {
					continue
				}
				ts, err := strconv.ParseFloat(f[0], 64)
				if err != nil {
					continue
				}
				switch {
				case strings.Contains(l, "restarting for its renewed certificates") && sp.from == 0:
					sp.from = ts
				case strings.Contains(l, "certificates renewed"):
					sp.till = ts
				}
			}
			if sp.from == 0 || sp.till == 0 {
				t.Errorf("%s: no renewal span in its journal:\n%s", h.Name(), out)
				continue
			}
			spans = append(spans, sp)
		}
		for i := range spans {
			for j := i + 1; j < len(spans); j++ {
				a, b := spans[i], spans[j]
				if a.from < b.till && b.from < a.till {
					t.Errorf("%s and %s restarted their units at the same time: %.1f-%.1f and %.1f-%.1f", a.host, b.host, a.from, a.till, b.from, b.till)
				}
			}
		}
		for _, sp := range spans {
			t.Logf("%s restarted its units for %.1f s", sp.host, sp.till-sp.from)
		}
	})

	var rest []*testhost.Host
	for _, h := range hosts {
		if h != seeder {
			rest = append(rest, h)
		}
	}
	t.Run("another node takes over seeding when the seeder dies", func(t *testing.T) {
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

	// The on-call's night: one host is down. status on the others names
	// it (etcd member and API server), and reset refuses to take a
	// second member out, changing nothing.
	t.Run("status names the stopped host and reset refuses while it is down", func(t *testing.T) {
		h := rest[0]
		await(t, time.Minute, h.Name()+"'s status naming "+seeder.Name(), func() error {
			st, code := statusJSON(t, h)
			all := strings.Join(st.Reasons, "\n")
			if code != 1 || !strings.Contains(all, "etcd member "+seeder.Name()) || !strings.Contains(all, "kube-apiserver on "+seeder.Name()) {
				return fmt.Errorf("exit %d, reasons:\n%s", code, all)
			}
			return nil
		})
		table, _ := run(h, "ecom-agent", "status")
		if table.ExitCode != 1 || !strings.Contains(table.Stdout, "DOWN") || !strings.Contains(table.Stdout, "NOT READY") {
			t.Errorf("status table (exit %d) does not show the down member and API server:\n%s", table.ExitCode, table.Stdout)
		}
		res, _ := run(h, "ecom-agent", "reset", "--yes")
		if res.ExitCode != 6 || !strings.Contains(res.Stderr, "down: "+seeder.Name()) || !strings.Contains(res.Stderr, "--force") {
			t.Errorf("reset with %s down: exit %d\nstdout: %s\nstderr: %s", seeder.Name(), res.ExitCode, res.Stdout, res.Stderr)
		}
		for _, u := range []string{"ecom-agent.service", "etcd.service", "kube-apiserver.service"} {
			if err := activeIs(h, u, "active")(); err != nil {
				t.Errorf("after a refused reset: %v", err)
			}
		}
		if res, _ := run(h, "test", "-e", "/etc/kubernetes/pki/ca.key"); res.ExitCode != 0 {
			t.Error("a refused reset removed the CA key")
		}
	})

	// Back to health; then a node is reset (its member removed, units and
	// files gone, config kept) and the same `join` brings it back as a
	// new node.
	t.Run("reset takes a node out and join brings it back as a new node", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
		defer cancel()
		if err := seeder.Start(ctx); err != nil {
			t.Fatal(err)
		}
		h, other := rest[0], rest[1]
		await(t, 4*time.Minute, "every member and API server healthy again", func() error {
			st, code := statusJSON(t, other)
			if code != 0 || st.Etcd == nil || len(st.Etcd.Members) != 3 || len(st.APIServers) != 3 {
				return fmt.Errorf("exit %d, reasons %v", code, st.Reasons)
			}
			return nil
		})
		before, _ := statusJSON(t, h)
		dry, _ := run(h, "ecom-agent", "reset", "--dry-run")
		if dry.ExitCode != 0 || !strings.Contains(dry.Stdout, "would remove etcd member "+h.Name()) || !strings.Contains(dry.Stdout, "would remove /etc/kubernetes/pki") {
			t.Errorf("reset --dry-run: exit %d\n%s\n%s", dry.ExitCode, dry.Stdout, dry.Stderr)
		}
		started := time.Now()
		res, err := h.Run(ctx, "ecom-agent", "reset", "--yes")
		if err != nil {
			t.Fatalf("reset: %v\nstdout: %s\nstderr: %s", err, res.Stdout, res.Stderr)
		}
		t.Logf("reset of %s took %s:\n%s", h.Name(), time.Since(started).Round(time.Second), res.Stdout)
		for _, want := range []string{
			"removed   etcd member " + h.Name(), "removed   unit kube-apiserver.service", "removed   unit etcd.service",
			"disabled  unit ecom-agent.service", "removed   /etc/kubernetes/pki", "removed   /var/lib/etcd",
			"removed   /var/lib/ecom-agent/state.json", "kept      /etc/ecom-agent/config.toml", "is reset; `ecom-agent join`",
		} {
			if !strings.Contains(res.Stdout, want) {
				t.Errorf("reset output lacks %q", want)
			}
		}
		// other's daemon publishes its status every few seconds.
		await(t, 30*time.Second, "two voters left", func() error {
			voters, _, err := memberNames(t, other)
			if err != nil || len(voters) != 2 || slices.Contains(voters, h.Name()) {
				return fmt.Errorf("voters after the reset: %v (%v)", voters, err)
			}
			return nil
		})
		for _, p := range []string{"/etc/kubernetes/pki/ca.key", "/var/lib/etcd/member", "/var/lib/ecom-agent/state.json", "/etc/systemd/system/kube-apiserver.service"} {
			if r, _ := run(h, "test", "-e", p); r.ExitCode == 0 {
				t.Errorf("%s survived the reset", p)
			}
		}
		if r, _ := run(h, "test", "-e", "/etc/ecom-agent/config.toml"); r.ExitCode != 0 {
			t.Error("the reset removed the config")
		}
		if r, _ := run(h, "systemctl", "is-enabled", "ecom-agent.service"); strings.TrimSpace(r.Stdout) != "disabled" {
			t.Errorf("ecom-agent.service is %q after the reset", strings.TrimSpace(r.Stdout))
		}
		if r, _ := run(h, "iptables", "-t", "nat", "-S", "KUBE-SERVICES"); r.ExitCode == 0 {
			t.Errorf("kube-proxy's rules survived the reset:\n%s", r.Stdout)
		}
		await(t, time.Minute, other.Name()+" seeing "+h.Name()+" leave gossip", func() error {
			st, _ := statusJSON(t, other)
			for _, g := range st.Gossip {
				if g.Name == h.Name() && g.State != "left" {
					return fmt.Errorf("%s is %s", h.Name(), g.State)
				}
			}
			return nil
		})

		res, err = h.Run(ctx, "ecom-agent", "join", "--timeout", "6m")
		if err != nil {
			t.Fatalf("join after the reset: %v\nstdout: %s\nstderr: %s", err, res.Stdout, res.Stderr)
		}
		await(t, 3*time.Minute, h.Name()+" a voter again, as a new node", func() error {
			voters, learners, err := memberNames(t, other)
			if err != nil || len(voters) != 3 || len(learners) != 0 || !slices.Contains(voters, h.Name()) {
				return fmt.Errorf("voters %v, learners %v (%v)", voters, learners, err)
			}
			st, _ := statusJSON(t, h)
			if st.Node.ID == before.Node.ID || st.Phase != nodestate.PhaseAPIReady {
				return fmt.Errorf("%s: node ID %s (before %s), phase %s", h.Name(), st.Node.ID, before.Node.ID, st.Phase)
			}
			return nil
		})
	})

	// Last, as pulling a cable disturbs what the subtests above check
	// (the seeding Lease moves with it).
	t.Run("the VIP moves within seconds when its holder goes", func(t *testing.T) {
		testVIP(t, hosts, vip)
	})
}
