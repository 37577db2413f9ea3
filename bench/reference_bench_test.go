//go:build bench

package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/integration/testhost"
	"github.com/ecom-platform/ecom-agent/pki"
)

// bareEtcdRun is figure 1's reference: on three fresh test hosts, a bare
// 3-member etcd with a static initial-cluster, started by hand at the same
// moment with the same binary (ecom-agent etcd), the same mutual TLS and
// the same ports; timed from the start to every member answering with
// one leader. The certificates are made beforehand (an admin copying them
// around by hand, which the agent saves them).
func bareEtcdRun(b *testing.B, s samples) {
	bin := os.Getenv("ECOM_AGENT_BIN")
	if bin == "" {
		b.Fatal("$ECOM_AGENT_BIN is not set: run `make bench`")
	}
	env := testhost.New(b, testhost.Options{Prefix: "e", Logf: func(string, ...any) {}})
	hosts := env.Start(b, 3)
	defer func() { _ = env.Close() }()

	// One CA, every node's certificates, made with the agent's own PKI.
	var caDir string
	var initial []string
	for i, h := range hosts {
		initial = append(initial, fmt.Sprintf("%s=https://%s:2380", h.Name(), h.Addr()))
		dir := b.TempDir()
		if caDir != "" {
			copyTree(b, filepath.Join(caDir, "etc/kubernetes/pki"), filepath.Join(dir, "etc/kubernetes/pki"), func(name string) bool {
				return strings.Contains(filepath.Base(name), "ca.") || strings.HasPrefix(filepath.Base(name), "sa.")
			})
		} else {
			caDir = dir
		}
		root, err := hostfs.New(dir)
		if err != nil {
			b.Fatal(err)
		}
		node := pki.Node{Name: h.Name(), AdvertiseIP: h.Addr(), ServiceIP: netip.MustParseAddr("10.96.0.1"), ClusterDomain: "cluster.local"}
		if _, err := pki.EnsureControlPlane(pki.NewStore(root, pki.Options{}), node); err != nil {
			b.Fatal(err)
		}
		for _, f := range []string{"ca.crt", "server.crt", "server.key", "peer.crt", "peer.key", "healthcheck-client.crt", "healthcheck-client.key"} {
			if err := h.CopyIn(filepath.Join(dir, "etc/kubernetes/pki/etcd", f), "/etc/kubernetes/pki/etcd/"+f, 0o600); err != nil {
				b.Fatal(err)
			}
		}
		if err := h.CopyIn(bin, "/usr/local/bin/ecom-agent", 0o755); err != nil {
			b.Fatal(err)
		}
		_ = i
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
	cli := bareClient(b, caDir, hosts)
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
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !keep(p) {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(to, filepath.Dir(rel)), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, 0o600)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// footprint is the agent daemon's own use on one host (etcd and the
// control plane run as their own units and are not counted).
type footprint struct {
	rssKiB, peakKiB int
	cpuTicks        int
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
		}
	}
	// Fields after the command's closing parenthesis: utime and stime
	// are the 12th and 13th.
	rest := stat.Stdout[strings.LastIndexByte(stat.Stdout, ')')+2:]
	sf := strings.Fields(rest)
	if len(sf) < 13 {
		return f, fmt.Errorf("short /proc/%s/stat: %q", pid, stat.Stdout)
	}
	u, _ := strconv.Atoi(sf[11])
	st, _ := strconv.Atoi(sf[12])
	f.cpuTicks = u + st
	return f, nil
}
