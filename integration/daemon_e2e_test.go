//go:build e2e

package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
	"github.com/ecom-platform/ecom-agent/status"
)

// etcdOverTLS connects from the test process, across the test network, to
// the hosts' etcd (every one an endpoint) with certificates read from the
// first.
func etcdOverTLS(t *testing.T, hs ...*testhost.Host) *clientv3.Client {
	t.Helper()
	h := hs[0]
	var endpoints []string
	for _, x := range hs {
		endpoints = append(endpoints, fmt.Sprintf("https://%s:2379", x.Addr()))
	}
	read := func(p string) []byte {
		b, err := h.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cert, err := tls.X509KeyPair(read("/etc/kubernetes/pki/etcd/healthcheck-client.crt"), read("/etc/kubernetes/pki/etcd/healthcheck-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(read("/etc/kubernetes/pki/etcd/ca.crt"))
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialTimeout: 3 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func statusJSON(t *testing.T, h *testhost.Host) (status.Status, int) {
	t.Helper()
	// status exits 1 when degraded and 2 when down, by design; only a
	// failure to run it at all is fatal here.
	res, err := run(h, "ecom-agent", "status", "-o", "json")
	if err != nil && res.ExitCode < 0 {
		t.Fatal(err)
	}
	var st status.Status
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil {
		t.Fatalf("status -o json on %s: %v\n%s\n%s", h.Name(), err, res.Stdout, res.Stderr)
	}
	// Every status document the tests read holds to the documented
	// schema, in every state the tests drive a node through.
	if err := statusSchema(t).Validate(mustUnmarshalJSON(t, res.Stdout)); err != nil {
		t.Errorf("status -o json on %s does not validate against status/status.schema.json: %v\n%s", h.Name(), err, res.Stdout)
	}
	return st, res.ExitCode
}

var (
	schemaOnce     sync.Once
	compiledSchema *jsonschema.Schema
	schemaErr      error
)

// statusSchema compiles the status document's documented schema.
func statusSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	schemaOnce.Do(func() {
		var doc any
		if schemaErr = json.Unmarshal(status.StatusSchema, &doc); schemaErr != nil {
			return
		}
		c := jsonschema.NewCompiler()
		if schemaErr = c.AddResource("status.schema.json", doc); schemaErr == nil {
			compiledSchema, schemaErr = c.Compile("status.schema.json")
		}
	})
	if schemaErr != nil {
		t.Fatal(schemaErr)
	}
	return compiledSchema
}

func mustUnmarshalJSON(t *testing.T, s string) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// healthyLine starts the STATUS= line of a converged, healthy
// single-member control-plane node.
const healthyLine = "healthy, phase api-ready, etcd 1 members"

// awaitHealthyLine waits for the agent's STATUS= line of a converged,
// healthy single-member node.
func awaitHealthyLine(t *testing.T, h *testhost.Host) {
	t.Helper()
	await(t, 2*time.Minute, "healthy STATUS= on "+h.Name(), func() error {
		if line := show(t, h, "ecom-agent.service", "StatusText"); !strings.HasPrefix(line, healthyLine) {
			return fmt.Errorf("StatusText %q", line)
		}
		return nil
	})
}

// TestDaemonRunsEtcdUnderSystemd is the real-systemd story of the agent:
// on three hosts at once, ecom-agent.service reaches READY=1 with a
// single-member etcd running as a systemd unit and serving mutual TLS;
// config changes restart etcd and nothing else; a power cut brings
// everything back.
func TestDaemonRunsEtcdUnderSystemd(t *testing.T) {
	env := testhost.New(t, hostOptions(t, "d"))
	hosts := env.Start(t, 3)

	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			install(t, h, nodeConfig(h, 1, ""))
			h.MustRun(t, "systemctl", "enable", "--now", "--no-block", "ecom-agent.service")
		}()
	}
	wg.Wait()
	for _, h := range hosts {
		// Type=notify: active only once the daemon sent READY=1.
		await(t, 2*time.Minute, "ecom-agent active on "+h.Name(), activeIs(h, "ecom-agent.service", "active"))
		await(t, 30*time.Second, "etcd active on "+h.Name(), activeIs(h, "etcd.service", "active"))
	}

	t.Run("status shows the daemon's STATUS line and a healthy node", func(t *testing.T) {
		for _, h := range hosts {
			awaitHealthyLine(t, h)
			// The node side (containerd, its image imports, the kubelet)
			// may still be starting after the line first said healthy:
			// the status says so until its Node is Ready.
			await(t, 2*time.Minute, "a healthy status on "+h.Name(), func() error {
				st, code := statusJSON(t, h)
				if code != 0 || st.Verdict != status.Healthy || st.Source != "daemon" || st.Etcd == nil || len(st.Etcd.Members) != 1 {
					return fmt.Errorf("status on %s: exit %d, %+v", h.Name(), code, st)
				}
				return nil
			})
			awaitHealthyLine(t, h)
			out := h.MustRun(t, "systemctl", "status", "--no-pager", "ecom-agent.service")
			if !strings.Contains(out, "Status: \"") {
				t.Errorf("systemctl status on %s lacks the STATUS= text:\n%s", h.Name(), out)
			}
		}
	})

	t.Run("etcd serves mutual TLS across the network", func(t *testing.T) {
		ids := map[string]bool{}
		for _, h := range hosts {
			cli := etcdOverTLS(t, h)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := cli.Put(ctx, "/e2e/"+h.Name(), h.Name())
			resp, gerr := cli.MemberList(ctx)
			cancel()
			if err != nil || gerr != nil {
				t.Fatalf("%s: put %v, member list %v", h.Name(), err, gerr)
			}
			ids[fmt.Sprint(resp.Header.ClusterId)] = true
		}
		if len(ids) != 3 {
			t.Errorf("want three independent single-member clusters, got cluster IDs %v", ids)
		}
	})

	h := hosts[0]
	t.Run("the control plane serves and the platform is seeded", func(t *testing.T) {
		for _, u := range []string{"kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service", "kube-proxy.service"} {
			await(t, time.Minute, u+" active", activeIs(h, u, "active"))
		}
		var st status.Status
		await(t, 2*time.Minute, "a seeding report with no failure", func() error {
			st, _ = statusJSON(t, h)
			if st.ControlPlane == nil || !st.ControlPlane.Ready {
				return fmt.Errorf("control plane %+v", st.ControlPlane)
			}
			if st.Seed == nil || st.Seed.Seeder != h.Name() || st.Seed.Counts["failed"] != 0 || st.Seed.Counts["created"]+st.Seed.Counts["unchanged"]+st.Seed.Counts["configured"] == 0 {
				return fmt.Errorf("seed %+v", st.Seed)
			}
			return nil
		})
		if !st.Seed.Leader {
			t.Errorf("the only node does not hold the seeding Lease: %+v", st.Seed)
		}
		out := h.MustRun(t, kubeBinDir+"/kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "get", "deployments,services,configmaps,secrets", "-n", "ecommerce", "-o", "name")
		for _, want := range []string{"deployment.apps/backend", "deployment.apps/frontend", "service/postgresql-service", "service/redis-service", "secret/postgresql-secret"} {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl get -n ecommerce lacks %s:\n%s", want, out)
			}
		}
		await(t, 2*time.Minute, "/metrics of a healthy node", func() error {
			metrics := h.MustRun(t, "curl", "-sf", "http://127.0.0.1:7948/metrics")
			for _, want := range []string{"ecom_agent_verdict 0", "ecom_agent_apiserver_ready 1", `ecom_agent_phase{phase="api-ready"} 1`, "ecom_agent_seed_leader 1"} {
				if !strings.Contains(metrics, want) {
					return fmt.Errorf("/metrics lacks %q", want)
				}
			}
			return nil
		})
		// The agent's identity is its own user, bound by the bootstrap
		// RBAC; admin.conf is not system:masters.
		who := h.MustRun(t, kubeBinDir+"/kubectl", "--kubeconfig", "/etc/kubernetes/ecom-agent.conf", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}")
		if !strings.HasPrefix(who, "system:ecom-agent:"+h.Name()+" ") || !strings.Contains(who, "ecom-agent:agents") {
			t.Errorf("the agent's identity: %q", who)
		}
	})

	t.Run("certs renew re-issues a certificate and restarts what reads it", func(t *testing.T) {
		before, err := h.ReadFile("/etc/kubernetes/pki/apiserver.crt")
		if err != nil {
			t.Fatal(err)
		}
		apiPID := show(t, h, "kube-apiserver.service", "ExecMainPID")
		out := h.MustRun(t, "ecom-agent", "certs", "renew", "apiserver")
		if !strings.Contains(out, "renewed    /etc/kubernetes/pki/apiserver.crt") || !strings.Contains(out, "restarted  kube-apiserver.service") || strings.Contains(out, "etcd.service") {
			t.Errorf("certs renew apiserver:\n%s", out)
		}
		after, _ := h.ReadFile("/etc/kubernetes/pki/apiserver.crt")
		old, _ := h.ReadFile("/etc/kubernetes/pki/apiserver.crt.old")
		if string(after) == string(before) || string(old) != string(before) {
			t.Error("apiserver.crt was not re-issued, or the old one not kept as apiserver.crt.old")
		}
		if got := show(t, h, "kube-apiserver.service", "ExecMainPID"); got == apiPID {
			t.Error("kube-apiserver was not restarted")
		}
		awaitHealthyLine(t, h)
		res, _ := run(h, "ecom-agent", "certs", "renew", "ca")
		if res.ExitCode != 1 || !strings.Contains(res.Stderr, "CAs are never renewed") {
			t.Errorf("renewing the CA: exit %d, %s", res.ExitCode, res.Stderr)
		}
	})

	t.Run("an unchanged config restarts nothing", func(t *testing.T) {
		pid := show(t, h, "etcd.service", "ExecMainPID")
		loaded := show(t, h, "etcd.service", "InactiveExitTimestampMonotonic")
		apiPID := show(t, h, "kube-apiserver.service", "ExecMainPID")
		h.MustRun(t, "systemctl", "restart", "ecom-agent.service")
		await(t, time.Minute, "ecom-agent active again", activeIs(h, "ecom-agent.service", "active"))
		// READY=1 comes as soon as the agent serves; its converge pass
		// ends with the healthy STATUS= line.
		awaitHealthyLine(t, h)
		if got := show(t, h, "etcd.service", "ExecMainPID"); got != pid {
			t.Errorf("etcd restarted (pid %s -> %s) though nothing changed", pid, got)
		}
		if got := show(t, h, "etcd.service", "InactiveExitTimestampMonotonic"); got != loaded {
			t.Errorf("etcd was started again (%s -> %s)", loaded, got)
		}
		if got := show(t, h, "kube-apiserver.service", "ExecMainPID"); got != apiPID {
			t.Errorf("kube-apiserver restarted (pid %s -> %s) though nothing changed", apiPID, got)
		}
	})

	t.Run("a changed etcd config restarts etcd", func(t *testing.T) {
		pid := show(t, h, "etcd.service", "ExecMainPID")
		cfg := nodeConfig(h, 1, "[etcd]\nextra_flags = { \"snapshot-count\" = \"5000\" }\n")
		if err := h.WriteFile("/etc/ecom-agent/config.toml", []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		h.MustRun(t, "systemctl", "restart", "ecom-agent.service")
		await(t, time.Minute, "ecom-agent active again", activeIs(h, "ecom-agent.service", "active"))
		await(t, time.Minute, "etcd restarted for its new config", func() error {
			if got := show(t, h, "etcd.service", "ExecMainPID"); got == pid || got == "0" {
				return fmt.Errorf("etcd pid %s (was %s)", got, pid)
			}
			return nil
		})
		awaitHealthyLine(t, h)
		if data, _ := h.ReadFile("/etc/kubernetes/etcd/etcd.yaml"); !strings.Contains(string(data), "snapshot-count: 5000") {
			t.Errorf("etcd.yaml was not re-rendered:\n%s", data)
		}
	})

	t.Run("an invalid config stops the agent without a restart loop", func(t *testing.T) {
		h := hosts[1]
		if err := h.WriteFile("/etc/ecom-agent/config.toml", []byte(nodeConfig(h, 1, "bogus_key = 1\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = run(h, "systemctl", "restart", "ecom-agent.service")
		await(t, 30*time.Second, "ecom-agent failed", activeIs(h, "ecom-agent.service", "failed"))
		if st := show(t, h, "ecom-agent.service", "ExecMainStatus"); st != "78" {
			t.Errorf("exit status %s, want 78 (an invalid config)", st)
		}
		if n := show(t, h, "ecom-agent.service", "NRestarts"); n != "0" {
			t.Errorf("systemd restarted the agent %s times on a config error", n)
		}
		journal := h.MustRun(t, "journalctl", "-u", "ecom-agent.service", "--no-pager", "-n", "20")
		if !strings.Contains(journal, "bogus_key") {
			t.Errorf("the journal does not say which key is wrong:\n%s", journal)
		}
		// etcd, a unit of its own, keeps running.
		if err := activeIs(h, "etcd.service", "active")(); err != nil {
			t.Error(err)
		}
		if err := h.WriteFile("/etc/ecom-agent/config.toml", []byte(nodeConfig(h, 1, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		h.MustRun(t, "systemctl", "restart", "ecom-agent.service")
		await(t, time.Minute, "ecom-agent active after the fix", activeIs(h, "ecom-agent.service", "active"))
	})

	t.Run("a control plane that never gets ready is named, with its journal", func(t *testing.T) {
		h := hosts[1]
		bad := nodeConfig(h, 1, "[apiserver]\nready_timeout = \"20s\"\nextra_flags = { \"audit-log-maxage\" = \"not-a-number\" }\n")
		if err := h.WriteFile("/etc/ecom-agent/config.toml", []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		h.MustRun(t, "systemctl", "restart", "ecom-agent.service")
		await(t, 2*time.Minute, "the diagnosis in status", func() error {
			st, code := statusJSON(t, h)
			cp := st.ControlPlane
			if cp == nil || cp.Error == "" {
				return fmt.Errorf("control plane %+v", cp)
			}
			if code != 2 || !strings.Contains(cp.Error, "kube-apiserver.service") || !strings.Contains(strings.Join(cp.Journal, "\n"), "not-a-number") {
				return fmt.Errorf("exit %d, error %q, journal %q", code, cp.Error, cp.Journal)
			}
			return nil
		})
		if err := h.WriteFile("/etc/ecom-agent/config.toml", []byte(nodeConfig(h, 1, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		h.MustRun(t, "systemctl", "restart", "ecom-agent.service")
		awaitHealthyLine(t, h)
	})

	t.Run("status falls back to systemd when the daemon is stopped", func(t *testing.T) {
		h := hosts[2]
		h.MustRun(t, "systemctl", "stop", "ecom-agent.service")
		st, code := statusJSON(t, h)
		if st.Source != "local" || st.Etcd == nil || code != 0 {
			t.Errorf("status with the daemon stopped: exit %d, %+v", code, st)
		}
		h.MustRun(t, "systemctl", "start", "ecom-agent.service")
	})

	t.Run("a power cut brings agent and etcd back with their data", func(t *testing.T) {
		h := hosts[2]
		if err := h.Kill(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
		await(t, 2*time.Minute, "ecom-agent active after the power cut", activeIs(h, "ecom-agent.service", "active"))
		await(t, time.Minute, "etcd active after the power cut", activeIs(h, "etcd.service", "active"))
		cli := etcdOverTLS(t, h)
		var resp *clientv3.GetResponse
		await(t, time.Minute, "the key written before the power cut", func() error {
			gctx, gcancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer gcancel()
			var err error
			resp, err = cli.Get(gctx, "/e2e/"+h.Name())
			if err == nil && len(resp.Kvs) != 1 {
				err = fmt.Errorf("key missing")
			}
			return err
		})
	})
}
