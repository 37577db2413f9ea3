//go:build e2e

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/demo"
	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// debs returns the packages in $name's directory (the Makefile builds
// them): the agent's, its images', the Kubernetes and the containerd
// packages.
func debs(t *testing.T, name string) []string {
	t.Helper()
	dir := os.Getenv(name)
	if dir == "" {
		t.Fatalf("$%s is not set: run the e2e suite with `make e2e`, which builds the packages", name)
	}
	all, err := filepath.Glob(filepath.Join(dir, "*.deb"))
	var paths []string
	for _, p := range all {
		if !strings.HasPrefix(filepath.Base(p), demo.PlatformPackage+"_") {
			paths = append(paths, p)
		}
	}
	if err != nil || len(paths) != 4 {
		t.Fatalf("want 4 packages in %s, found %v (%v)", dir, paths, err)
	}
	slices.Sort(paths)
	return paths
}

// joinCode runs `ecom-agent join` with args and returns its exit code and
// output.
func joinCode(t *testing.T, h *testhost.Host, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := h.Run(ctx, append([]string{"ecom-agent", "join"}, args...)...)
	if err != nil && res.ExitCode < 0 {
		t.Fatalf("join on %s: %v", h.Name(), err)
	}
	return res.ExitCode, res.Stdout + res.Stderr
}

// TestPackagePath is `make demo`, asserted, and judged: three
// control-plane and two worker hosts, the packages installed with dpkg -i,
// the same config on each control-plane host, join on all at once, the
// workers with a token; then every node is healthy with a ready API on one
// 3-voter etcd and the platform seeded, and the upstream conformance
// subset passes on that cluster (one bring-up for both). A sixth host then
// meets bad input at the door: each mistake has its exit code and
// message (a worker's deleted token among them), and the host joins once
// fixed.
func TestPackagePath(t *testing.T) {
	suite, imagesDir := conformanceInputs(t)
	env := testhost.New(t, testhost.Options{Prefix: "p", Logf: t.Logf, BeforeBoot: demo.MountImages(imagesDir)})
	c, err := demo.Up(context.Background(), demo.Options{Env: env, N: 3, Workers: 2, Debs: debs(t, "ECOM_DEB_DIR"), Logf: t.Logf})
	for _, s := range c.Stages {
		t.Logf("stage %-45s %s", s.Name, s.Took.Round(100*time.Millisecond))
	}
	if err != nil {
		t.Fatal(err)
	}
	cps := c.ControlPlanes

	t.Run("every node is healthy on one cluster with the platform seeded", func(t *testing.T) {
		var cluster string
		for _, h := range cps {
			for _, u := range []string{"ecom-agent.service", "etcd.service", "kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service"} {
				if err := activeIs(h, u, "active")(); err != nil {
					t.Error(err)
				}
			}
			id, voters, _, err := formed(t, h)
			if err != nil || voters != 3 || (cluster != "" && id != cluster) {
				t.Errorf("%s: etcd cluster %s with %d voters (%v), want one cluster of 3", h.Name(), id, voters, err)
			}
			cluster = id
		}
		for _, h := range c.Hosts {
			if got := strings.TrimSpace(h.MustRun(t, "systemctl", "is-enabled", "ecom-agent.service")); got != "enabled" {
				t.Errorf("%s: ecom-agent.service is %s after join, want enabled", h.Name(), got)
			}
		}
		await(t, 3*time.Minute, "every status healthy with the platform seeded", func() error {
			for _, h := range cps {
				st, code := statusJSON(t, h)
				if code != 0 || st.ControlPlane == nil || !st.ControlPlane.Ready || st.Seed == nil || st.Seed.Seeder == "" {
					return fmt.Errorf("%s: exit %d, %s: %v", h.Name(), code, st.Verdict, st.Reasons)
				}
			}
			for _, h := range c.Workers {
				st, code := statusJSON(t, h)
				if code != 0 || st.Kubelet == nil || !st.Kubelet.Ready {
					return fmt.Errorf("%s: exit %d, %s: %v", h.Name(), code, st.Verdict, st.Reasons)
				}
			}
			return nil
		})
		out := cps[0].MustRun(t, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "get", "deployments", "-n", "ecommerce", "-o", "name")
		if !strings.Contains(out, "deployment.apps/backend") {
			t.Errorf("no backend deployment:\n%s", out)
		}
		// crictl, from the containerd package, reaches the node's
		// containerd through /etc/crictl.yaml: the CoreDNS pods run on
		// some node.
		var pods string
		for _, h := range c.Hosts {
			pods += h.MustRun(t, "crictl", "pods", "--namespace", "kube-system", "-o", "json")
		}
		if !strings.Contains(pods, "coredns") {
			t.Errorf("crictl pods lists no CoreDNS pod on any node:\n%.2000s", pods)
		}
	})

	t.Run("the upstream conformance subset passes", func(t *testing.T) { testConformanceSubset(t, c, suite) })

	t.Run("bad input at the door", func(t *testing.T) {
		h := env.Start(t, 1)[0]
		if err := demo.Install(context.Background(), h, debs(t, "ECOM_DEB_DIR")); err != nil {
			t.Fatal(err)
		}
		var peers []string
		for _, o := range cps {
			peers = append(peers, o.Addr().String())
		}
		good := demo.Config("demo", peers)

		// A typo'd key: exit 78 (an invalid config), the key named,
		// nothing started.
		if err := demo.Configure(h, strings.Replace(good, "expect = 3", "expekt = 3", 1), c.Secrets); err != nil {
			t.Fatal(err)
		}
		code, out := joinCode(t, h, "--timeout", "1m")
		if code != 78 || !strings.Contains(out, "expekt") {
			t.Errorf("typo'd key: exit %d, want 78 naming the key:\n%s", code, out)
		}
		if err := activeIs(h, "ecom-agent.service", "inactive")(); err != nil {
			t.Errorf("after a config error: %v", err)
		}

		// A Kubernetes program missing and a port taken: exit 3, every
		// failure with its fix, nothing started.
		missing := good + "\n[binaries]\nkube_scheduler = \"/usr/local/bin/kube-scheduler\"\n"
		if err := demo.Configure(h, missing, c.Secrets); err != nil {
			t.Fatal(err)
		}
		// systemd itself holds the port, through a transient socket unit.
		h.MustRun(t, "systemd-run", "--unit=e2e-port-blocker", "--socket-property=ListenStream=0.0.0.0:6443", "/bin/sleep", "600")
		code, out = joinCode(t, h, "--timeout", "1m")
		h.MustRun(t, "systemctl", "stop", "e2e-port-blocker.socket")
		for _, want := range []string{"kube-scheduler not found at /usr/local/bin/kube-scheduler", "binaries.kube_scheduler", "0.0.0.0:6443 (kube-apiserver) is in use", "apiserver.port"} {
			if !strings.Contains(out, want) {
				t.Errorf("preflight output lacks %q:\n%s", want, out)
			}
		}
		if code != 3 {
			t.Errorf("preflight: exit %d, want 3", code)
		}
		if err := activeIs(h, "ecom-agent.service", "inactive")(); err != nil {
			t.Errorf("after a failed preflight: %v", err)
		}

		// An unreachable peer: exit 4 once --timeout passes, saying what it
		// waited for.
		unreachable := strings.Replace(demo.Config("demo", []string{"10.77.255.254"}), "expect = 1", "expect = 3", 1)
		if err := demo.Configure(h, unreachable, c.Secrets); err != nil {
			t.Fatal(err)
		}
		code, out = joinCode(t, h, "--timeout", "20s")
		if code != 4 || !strings.Contains(out, "waiting for") {
			t.Errorf("unreachable peer: exit %d, want 4 saying what it waits for:\n%s", code, out)
		}

		// A wrong cluster secret: refused, exit 5.
		wrong, err := demo.NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		if err := demo.Configure(h, good, demo.Secrets{Cluster: wrong, ControlPlane: c.Secrets.ControlPlane}); err != nil {
			t.Fatal(err)
		}
		h.MustRun(t, "systemctl", "restart", "ecom-agent.service")
		code, out = joinCode(t, h, "--timeout", "3m")
		if code != 5 {
			t.Errorf("wrong secret: exit %d, want 5:\n%s", code, out)
		}

		// A worker whose token the cluster no longer knows: refused,
		// exit 5, without waiting out --timeout.
		tok := strings.TrimSpace(cps[0].MustRun(t, "ecom-agent", "token", "create", "--ttl", "1h"))
		id, _, _ := strings.Cut(tok[strings.LastIndex(tok, "::")+2:], ".")
		cps[0].MustRun(t, "ecom-agent", "token", "delete", id)
		if err := demo.Configure(h, demo.WorkerConfig(good, peers), demo.Secrets{}); err != nil {
			t.Fatal(err)
		}
		if err := h.WriteFile(demo.JoinTokenFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		h.MustRun(t, "systemctl", "restart", "ecom-agent.service")
		code, out = joinCode(t, h, "--timeout", "4m")
		if code != 5 || !strings.Contains(out, "not a token of this cluster") {
			t.Errorf("a deleted token: exit %d, want 5 saying why:\n%s", code, out)
		}

		// Fixed: the fourth control-plane node joins as a standby.
		if err := demo.Configure(h, good, c.Secrets); err != nil {
			t.Fatal(err)
		}
		h.MustRun(t, "systemctl", "restart", "ecom-agent.service")
		code, out = joinCode(t, h, "--timeout", "3m")
		if code != 0 || !strings.Contains(out, "standby") {
			t.Errorf("after the fix: exit %d, want 0 as a standby:\n%s", code, out)
		}
	})
}

// TestPackageLifecycle: install, join, upgrade to a package with a higher
// version (the agent restarts, the cluster is intact), remove (refused on
// an active etcd member; forced, the agent stops and its state stays),
// purge (the etcd unit that runs the agent's binary goes; the member's
// identity and etcd's data stay).
func TestPackageLifecycle(t *testing.T) {
	env := testhost.New(t, testhost.Options{Prefix: "l", Logf: t.Logf})
	h := env.Start(t, 1)[0]
	ctx := context.Background()
	if err := demo.Install(ctx, h, debs(t, "ECOM_DEB_DIR")); err != nil {
		t.Fatal(err)
	}
	// is-enabled exits 1 for disabled: only its output counts here.
	if res, _ := run(h, "systemctl", "is-enabled", "ecom-agent.service"); strings.TrimSpace(res.Stdout) != "disabled" {
		t.Errorf("after install ecom-agent.service is %q, want disabled until join", res.Stdout)
	}
	secret, _ := demo.NewSecrets()
	// One peer, itself: expect = 1.
	if err := demo.Configure(h, demo.Config("life", []string{h.Addr().String()}), secret); err != nil {
		t.Fatal(err)
	}
	if code, out := joinCode(t, h, "--timeout", "4m"); code != 0 {
		t.Fatalf("join: exit %d\n%s", code, out)
	}
	id, _, _, err := formed(t, h)
	if err != nil {
		t.Fatal(err)
	}
	before := h.MustRun(t, "ecom-agent", "version")
	pid := show(t, h, "ecom-agent.service", "MainPID")

	t.Run("upgrade restarts the agent and keeps the cluster", func(t *testing.T) {
		if err := demo.Install(ctx, h, debs(t, "ECOM_DEB_UPGRADE_DIR")); err != nil {
			t.Fatal(err)
		}
		if after := h.MustRun(t, "ecom-agent", "version"); after == before {
			t.Errorf("version unchanged after the upgrade: %s", after)
		}
		await(t, time.Minute, "the agent restarted", func() error {
			if got := show(t, h, "ecom-agent.service", "MainPID"); got == pid || got == "0" {
				return fmt.Errorf("MainPID %s (was %s)", got, pid)
			}
			return activeIs(h, "ecom-agent.service", "active")()
		})
		awaitHealthyLine(t, h)
		if got, _, _, err := formed(t, h); err != nil || got != id {
			t.Errorf("etcd cluster %s after the upgrade (%v), want %s", got, err, id)
		}
	})

	t.Run("remove is refused on an etcd member, then forced stops the agent and keeps its state", func(t *testing.T) {
		res, err := run(h, "dpkg", "-r", "ecom-agent")
		if err == nil || !strings.Contains(res.Stderr, "refusing to remove: this host is an active etcd member") {
			t.Fatalf("dpkg -r on an etcd member: %v\n%s", err, res.Stderr)
		}
		if err := activeIs(h, "ecom-agent.service", "active")(); err != nil {
			t.Errorf("after the refused removal: %v", err)
		}
		h.MustRun(t, "env", "ECOM_AGENT_FORCE_REMOVE=1", "dpkg", "-r", "ecom-agent")
		if err := activeIs(h, "ecom-agent.service", "inactive")(); err != nil {
			show, _ := run(h, "systemctl", "show", "ecom-agent.service", "-p", "Result,ExecMainCode,ExecMainStatus")
			journal, _ := run(h, "journalctl", "-u", "ecom-agent.service", "--no-pager", "-o", "cat", "-n", "40")
			t.Errorf("%v\n%s\n%s", err, show.Stdout, journal.Stdout)
		}
		for _, p := range []string{"/var/lib/ecom-agent/state.json", "/etc/ecom-agent/config.toml", "/var/lib/etcd/member"} {
			if _, err := run(h, "test", "-e", p); err != nil {
				t.Errorf("%s is gone after dpkg -r", p)
			}
		}
	})

	t.Run("purge keeps a member's identity and data and removes the etcd unit that needs the agent", func(t *testing.T) {
		h.MustRun(t, "dpkg", "-P", "ecom-agent")
		if _, err := run(h, "test", "-e", "/etc/systemd/system/etcd.service"); err == nil {
			t.Error("etcd.service (ExecStart=/usr/bin/ecom-agent) survived dpkg -P")
		}
		if err := activeIs(h, "etcd.service", "inactive")(); err != nil {
			t.Error(err)
		}
		// The host holds etcd data: the state that names its member stays.
		for _, p := range []string{"/var/lib/ecom-agent/state.json", "/var/lib/etcd/member", "/etc/kubernetes/pki/ca.crt"} {
			if _, err := run(h, "test", "-e", p); err != nil {
				t.Errorf("%s is gone after dpkg -P", p)
			}
		}
	})
}
