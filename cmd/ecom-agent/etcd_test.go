package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestEtcdSubcommandServesMutualTLS renders a single-member node with the
// real renderer and PKI, starts `ecom-agent etcd` on that config, and
// writes and reads a key over mutual TLS.
func TestEtcdSubcommandServesMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real etcd")
	}
	clientPort, peerPort := freePort(t), freePort(t)
	toml := fmt.Sprintf(`
cluster_name = "shop-test"
role = "control-plane"
node_name = "etcd-test"
advertise_address = "10.77.0.11"
cluster_secret = "test-secret-0123456789abcdef0123456789"
control_plane_key = "test-cp-key-fedcba9876543210fedcba98765"
[etcd]
client_port = %d
peer_port = %d
`, clientPort, peerPort)
	cfg, err := config.Parse([]byte(toml), "test.toml", config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Config validation refuses loopback advertise addresses, rightly for
	// real nodes; this test only has loopback.
	cfg.AdvertiseAddress = netip.MustParseAddr("127.0.0.1")
	root, _ := hostfs.New(t.TempDir())
	r := bootstrap.NewRenderer(cfg, root, discard())
	r.Membership = bootstrap.EtcdMembership{
		State: "new",
		Token: "test-token",
		Peers: map[string]string{"etcd-test": bootstrap.EtcdPeerURL(cfg.AdvertiseAddress, peerPort)},
	}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	rendered, err := root.ReadFile(bootstrap.EtcdConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	metrics := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	rendered = bytes.Replace(rendered, []byte("http://127.0.0.1:2381"), []byte(metrics), 1)
	cfgFile := filepath.Join(t.TempDir(), "etcd.yaml")
	under, err := bootstrap.EtcdConfigUnder(root, rendered)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, under, 0o600); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	cmd := exec.Command(os.Args[0], "etcd", "--config-file", cfgFile)
	cmd.Env = append(os.Environ(), "ECOM_AGENT_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("etcd output:\n%s", logs.String())
		}
	})

	tlsCfg := clientTLS(t, root, "etcd/healthcheck-client")
	endpoint := fmt.Sprintf("https://127.0.0.1:%d", clientPort)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: tlsCfg, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// etcd needs a moment to elect itself; bounded retries, no fixed sleep.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = cli.Put(ctx, "/ecom-agent/test", "hello")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("put over mTLS never succeeded: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/ecom-agent/test")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "hello" {
		t.Fatalf("get: %v %v", resp, err)
	}
	members, err := cli.MemberList(ctx)
	if err != nil || len(members.Members) != 1 || members.Members[0].Name != "etcd-test" {
		t.Fatalf("member list: %v %v", members, err)
	}

	// Without a client certificate the server refuses the connection.
	noCert := tlsCfg.Clone()
	noCert.Certificates = nil
	anon, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: noCert, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	actx, acancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer acancel()
	if _, err := anon.Get(actx, "/ecom-agent/test"); err == nil {
		t.Fatal("etcd served a client without a certificate")
	}
}

func clientTLS(t *testing.T, root *hostfs.Root, name string) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(root.Path(pki.CertPath(name)), root.Path(pki.KeyPath(name)))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := root.ReadFile(pki.CertPath("etcd/ca"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}
