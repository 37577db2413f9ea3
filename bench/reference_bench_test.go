//go:build bench

package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/integration/kubetest"
	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// bareClusterRun is the reference of figures 1 and 2, by hand on three
// fresh test hosts: every file rendered beforehand by the agent's own
// renderer (one set of CAs, service-account keys and encryption key for
// all, as an admin copying them around would have), then a bare 3-member
// etcd with a static initial-cluster started on all three at the same
// moment with the same binary (ecom-agent etcd), mutual TLS and ports,
// timed to every member answering with one leader; then the three
// kube-apiservers started at once with the agent's flags, timed to /readyz
// on all three.
func bareClusterRun(b *testing.B, s samples) {
	bin := os.Getenv("ECOM_AGENT_BIN")
	if bin == "" {
		b.Fatal("$ECOM_AGENT_BIN is not set: run `make bench`")
	}
	env := testhost.New(b, testhost.Options{Prefix: "e", Logf: func(string, ...any) {}})
	hosts := env.Start(b, 3)
	defer func() { _ = env.Close() }()

	peers := map[string]string{}
	var initial, etcdURLs []string
	for _, h := range hosts {
		peers[h.Name()] = fmt.Sprintf("https://%s:2380", h.Addr())
		initial = append(initial, fmt.Sprintf("%s=https://%s:2380", h.Name(), h.Addr()))
		etcdURLs = append(etcdURLs, fmt.Sprintf("https://%s:2379", h.Addr()))
	}
	var firstDir string
	cfgs := make([]*config.Config, len(hosts))
	for i, h := range hosts {
		cfg, err := config.Parse([]byte(fmt.Sprintf(`cluster_name = "bare"
role = "control-plane"
node_name = %q
advertise_address = %q
cluster_secret = "bench-secret-0123456789abcdef0123456789"
control_plane_key = "test-cp-key-fedcba9876543210fedcba98765"
expect = 3
`, h.Name(), h.Addr())), "bare.toml", config.LoadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		cfgs[i] = cfg
		dir := b.TempDir()
		if firstDir != "" {
			copyTree(b, filepath.Join(firstDir, "etc/kubernetes"), filepath.Join(dir, "etc/kubernetes"), func(name string) bool {
				base := filepath.Base(name)
				return strings.Contains(base, "ca.") || strings.HasPrefix(base, "sa.") || strings.Contains(name, "/encryption/")
			})
		} else {
			firstDir = dir
		}
		root, err := hostfs.New(dir)
		if err != nil {
			b.Fatal(err)
		}
		r := bootstrap.NewRenderer(cfg, root, slog.New(slog.DiscardHandler))
		r.SkipUnitFiles = true
		r.Membership = bootstrap.EtcdMembership{State: "new", Token: "bare", Peers: peers}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err = r.Run(ctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		copyIn(b, h, filepath.Join(dir, "etc/kubernetes"), "/etc/kubernetes")
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		_, err = h.Run(ctx, "mkdir", "-p", "-m", "0700", filepath.Dir(bootstrap.AuditLogFile))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if err := h.CopyIn(bin, "/usr/local/bin/ecom-agent", 0o755); err != nil {
			b.Fatal(err)
		}
		apiserverBin := filepath.Join(kubetest.BinDir(cfg.KubernetesVersion), "kube-apiserver")
		if err := h.CopyIn(apiserverBin, "/usr/local/bin/kube-apiserver", 0o755); err != nil {
			b.Fatal(err)
		}
	}

	start := time.Now()
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			p := "/etc/kubernetes/pki/etcd/"
			ip := h.Addr().String()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := h.Run(ctx, "systemd-run", "--unit=bare-etcd", "--collect", "/usr/local/bin/ecom-agent", "etcd",
				"--name="+h.Name(), "--data-dir=/var/lib/bare-etcd",
				"--listen-peer-urls=https://"+ip+":2380", "--initial-advertise-peer-urls=https://"+ip+":2380",
				"--listen-client-urls=https://"+ip+":2379,https://127.0.0.1:2379", "--advertise-client-urls=https://"+ip+":2379",
				"--initial-cluster="+strings.Join(initial, ","), "--initial-cluster-state=new", "--initial-cluster-token=bare",
				"--cert-file="+p+"server.crt", "--key-file="+p+"server.key", "--client-cert-auth", "--trusted-ca-file="+p+"ca.crt",
				"--peer-cert-file="+p+"peer.crt", "--peer-key-file="+p+"peer.key", "--peer-client-cert-auth", "--peer-trusted-ca-file="+p+"ca.crt")
			if err != nil {
				b.Errorf("start etcd on %s: %v %s", h.Name(), err, res.Stderr)
			}
		})
	}
	wg.Wait()
	cli := bareClient(b, firstDir, hosts)
	defer cli.Close()
	deadline := start.Add(2 * time.Minute)
	for {
		if time.Now().After(deadline) {
			b.Fatal("the bare etcd did not form in 2 minutes")
		}
		if leader := commonLeader(cli, hosts); leader != 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.add("bare: 3 etcd started by hand to a 3-voter quorum", time.Since(start))

	// The three API servers at once, each with the agent's flags for
	// its node and every etcd member.
	start = time.Now()
	for i, h := range hosts {
		local := fmt.Sprintf("https://%s:2379", h.Addr())
		args := bootstrap.APIServerFlags(cfgs[i], bootstrap.EtcdServers(local, etcdURLs)).Args()
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := h.Run(ctx, append([]string{"systemd-run", "--unit=bare-apiserver", "--collect", "/usr/local/bin/kube-apiserver"}, args...)...)
			if err != nil {
				b.Errorf("start kube-apiserver on %s: %v %s", h.Name(), err, res.Stderr)
			}
		})
	}
	wg.Wait()
	admin, err := clientcmd.BuildConfigFromFlags("", filepath.Join(firstDir, bootstrap.SuperAdminKubeconfig))
	if err != nil {
		b.Fatal(err)
	}
	ready := map[string]bool{}
	deadline = start.Add(3 * time.Minute)
	for len(ready) < len(hosts) {
		if time.Now().After(deadline) {
			b.Fatalf("the bare kube-apiservers were not all ready in 3 minutes (ready: %v)", ready)
		}
		for i, h := range hosts {
			if !ready[h.Name()] && readyz(admin, fmt.Sprintf("https://%s:%d", h.Addr(), cfgs[i].APIServer.Port)) {
				ready[h.Name()] = true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.add("bare: 3 kube-apiservers started at once to /readyz on all 3", time.Since(start))
}

// readyz asks host's /readyz with the admin's credentials.
func readyz(admin *rest.Config, host string) bool {
	c := rest.CopyConfig(admin)
	c.Host = host
	c.Timeout = time.Second
	hc, err := rest.HTTPClientFor(c)
	if err != nil {
		return false
	}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(host + "/readyz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// copyIn copies the local tree from into the host at to, keys and all
// (0600).
func copyIn(b *testing.B, h *testhost.Host, from, to string) {
	eachFile(b, from, func(string) bool { return true }, func(p, rel string) error {
		return h.CopyIn(p, filepath.Join(to, rel), 0o600)
	})
}

// commonLeader returns the leader every member reports, 0 unless all
// three answer and agree.
func commonLeader(cli *clientv3.Client, hosts []*testhost.Host) uint64 {
	var leader uint64
	for _, h := range hosts {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cli.Status(ctx, fmt.Sprintf("https://%s:2379", h.Addr()))
		cancel()
		if err != nil || st.Leader == 0 || (leader != 0 && st.Leader != leader) {
			return 0
		}
		leader = st.Leader
	}
	return leader
}

// hostEtcdClient is a client of the hosts' etcd with the certificates
// the agent made on the first host, nil until they exist there.
func hostEtcdClient(hosts []*testhost.Host) *clientv3.Client {
	read := func(p string) []byte {
		b, _ := hosts[0].ReadFile("/etc/kubernetes/pki/etcd/" + p)
		return b
	}
	cli, _ := etcdClientFrom(read("healthcheck-client.crt"), read("healthcheck-client.key"), read("ca.crt"), hosts)
	return cli
}

// etcdClientFrom is a client of the hosts' etcd on port 2379 with a
// client certificate and the etcd CA.
func etcdClientFrom(crt, key, ca []byte, hosts []*testhost.Host) (*clientv3.Client, error) {
	cert, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	var eps []string
	for _, h := range hosts {
		eps = append(eps, fmt.Sprintf("https://%s:2379", h.Addr()))
	}
	return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: time.Second, Logger: zap.NewNop(),
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}})
}

func bareClient(b *testing.B, dir string, hosts []*testhost.Host) *clientv3.Client {
	p := filepath.Join(dir, "etc/kubernetes/pki/etcd")
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(p, name))
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	cli, err := etcdClientFrom(read("healthcheck-client.crt"), read("healthcheck-client.key"), read("ca.crt"), hosts)
	if err != nil {
		b.Fatal(err)
	}
	return cli
}

// copyTree copies the files under from that keep() accepts.
func copyTree(b *testing.B, from, to string, keep func(string) bool) {
	eachFile(b, from, keep, func(p, rel string) error {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(to, filepath.Dir(rel)), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, 0o600)
	})
}

// eachFile calls f with the path, and the path relative to from, of every
// file under from that keep() accepts.
func eachFile(b *testing.B, from string, keep func(string) bool, f func(p, rel string) error) {
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !keep(p) {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		return f(p, rel)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// footprint is the agent daemon's own use on one host (etcd and the
// control plane run as their own units and are not counted).
type footprint struct {
	rssKiB, peakKiB int
	// anonKiB and fileKiB split rssKiB: the heap, stacks and the Go
	// runtime's own, and the binary's pages read in.
	anonKiB, fileKiB int
	cpuTicks         int
}

// agentFootprint reads ecom-agent.service's main process: resident and
// peak memory, and CPU time so far (clock ticks of 10 ms).
func agentFootprint(h *testhost.Host) (footprint, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := h.Run(ctx, "systemctl", "show", "-p", "MainPID", "--value", "ecom-agent.service")
	if err != nil {
		return footprint{}, err
	}
	pid := strings.TrimSpace(res.Stdout)
	status, err := h.Run(ctx, "cat", "/proc/"+pid+"/status")
	if err != nil {
		return footprint{}, err
	}
	stat, err := h.Run(ctx, "cat", "/proc/"+pid+"/stat")
	if err != nil {
		return footprint{}, err
	}
	var f footprint
	for _, l := range strings.Split(status.Stdout, "\n") {
		fs := strings.Fields(l)
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.Atoi(fs[1])
		switch fs[0] {
		case "VmRSS:":
			f.rssKiB = v
		case "VmHWM:":
			f.peakKiB = v
		case "RssAnon:":
			f.anonKiB = v
		case "RssFile:":
			f.fileKiB = v
		}
	}
	ticks, err := statCPUTicks(stat.Stdout)
	if err != nil {
		return f, fmt.Errorf("/proc/%s/stat: %w", pid, err)
	}
	f.cpuTicks = int(ticks)
	return f, nil
}

// statCPUTicks reads a process's user and system CPU time, in clock ticks
// (1/100 s), from its /proc/PID/stat: the 12th and 13th fields after the
// command's closing parenthesis.
func statCPUTicks(stat string) (int64, error) {
	fs := strings.Fields(stat[strings.LastIndexByte(stat, ')')+1:])
	if len(fs) < 13 {
		return 0, fmt.Errorf("short: %q", stat)
	}
	u, err1 := strconv.ParseInt(fs[11], 10, 64)
	s, err2 := strconv.ParseInt(fs[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("no CPU times in %q", stat)
	}
	return u + s, nil
}
