package workercreds

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/peer"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/token"
)

// signerNow is the signing node's clock.
var signerNow = time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)

// gossipView is a gossip view a test sets.
type gossipView struct {
	mu         sync.Mutex
	ms         []gossip.Member
	registered map[string]bool // Nodes registered in the API
}

// register marks a Node as registered.
func (v *gossipView) register(name string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.registered == nil {
		v.registered = map[string]bool{}
	}
	v.registered[name] = true
}

// isRegistered is the signer's NodeLookup.
func (v *gossipView) isRegistered(_ context.Context, name string) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.registered[name], nil
}

func (v *gossipView) set(ms ...gossip.Member) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ms = ms
}

func (v *gossipView) members() []gossip.Member {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.ms)
}

func viewMember(name, addr string, role config.Role, st gossip.State) gossip.Member {
	return gossip.Member{Name: name, Addr: netip.MustParseAddrPort(addr), State: st, Meta: gossip.Meta{Role: role}}
}

// signingNode is a control-plane node whose cluster CA is on disk, and
// its signer over view.
func signingNode(t *testing.T, view *gossipView) (*Signer, *pki.Authority) {
	t.Helper()
	cfg := configtest.ControlPlane(t)
	root := configtest.Root(t)
	ca, _, err := pki.NewStore(root, bootstrap.PKIOptions(cfg)).EnsureCA(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	sg := &Signer{Config: cfg, Root: root, Log: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return signerNow }, Members: view.members, Registered: view.isRegistered}
	return sg, ca
}

// serve serves h as the node-certs method on a loopback port until the
// test ends, and returns the address.
func serve(t *testing.T, cfg *config.Config, h peer.HandlerFunc) string {
	t.Helper()
	srv, err := peer.NewServer(peer.Options{Secret: cfg.Secret(), ClusterName: cfg.ClusterName, NodeID: "cp-1-id", NodeName: "cp-1"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle(MethodNodeCerts, h)
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the signer's endpoint did not stop")
		}
	})
	return ln.Addr().String()
}

// client is the agents' RPC client of the node called name.
func client(t *testing.T, cfg *config.Config, name string) *peer.Client {
	t.Helper()
	cli, err := peer.NewClient(peer.Options{Secret: cfg.Secret(), ClusterName: cfg.ClusterName, NodeID: name + "-id", NodeName: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cli.Close)
	return cli
}

// csrs are a kubelet's and a kube-proxy's requests with the subjects
// given, and their keys.
type csrs struct {
	kubeletKey, proxyKey []byte
	req                  nodeCertsRequest
}

func newCSRs(t *testing.T, cfg *config.Config, kubeletCN string, kubeletO []string, proxyCN string, proxyO []string) csrs {
	t.Helper()
	var c csrs
	var err error
	if c.kubeletKey, c.req.KubeletCSR, err = pki.NewRequest(kubeletCN, kubeletO, bootstrap.PKIOptions(cfg)); err != nil {
		t.Fatal(err)
	}
	if c.proxyKey, c.req.ProxyCSR, err = pki.NewRequest(proxyCN, proxyO, bootstrap.PKIOptions(cfg)); err != nil {
		t.Fatal(err)
	}
	return c
}

func call(cli *peer.Client, addr string, req nodeCertsRequest) (nodeCertsResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var resp nodeCertsResponse
	err := cli.Call(ctx, addr, MethodNodeCerts, req, &resp)
	return resp, err
}

// checkClientCert parses a signed certificate with the key its request
// was made with, and checks it is a client certificate of the CA for
// exactly the subject given.
func checkClientCert(t *testing.T, what string, certPEM, keyPEM []byte, ca *x509.Certificate, cn string, orgs []string) {
	t.Helper()
	kp, err := pki.ParseCombinedPEM(slices.Concat(certPEM, keyPEM))
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	c := kp.Cert
	if c.Subject.CommonName != cn || !slices.Equal(c.Subject.Organization, orgs) {
		t.Errorf("%s: subject CN %q O %q, want CN %q O %q", what, c.Subject.CommonName, c.Subject.Organization, cn, orgs)
	}
	if c.IsCA || !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(c.DNSNames)+len(c.IPAddresses) != 0 {
		t.Errorf("%s: CA %v, usages %v, names %v %v", what, c.IsCA, c.ExtKeyUsage, c.DNSNames, c.IPAddresses)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("%s does not verify against the cluster CA: %v", what, err)
	}
}

// A worker alive in the view at the address it calls from gets its own
// kubelet identity and kube-proxy's, whatever subjects its requests
// asked for, and the cluster CA's certificate (never its key).
func TestSignerSignsWorkerIdentity(t *testing.T) {
	view := &gossipView{}
	view.set(viewMember("w-1", "127.0.0.1:7946", config.RoleWorker, gossip.StateAlive),
		viewMember("cp-2", "10.77.0.12:7946", config.RoleControlPlane, gossip.StateAlive))
	sg, ca := signingNode(t, view)
	addr := serve(t, sg.Config, sg.Handle)
	cli := client(t, sg.Config, "w-1")

	for _, tc := range []struct {
		name       string
		kubeletCN  string
		kubeletO   []string
		proxyCN    string
		proxyO     []string
		kubeletWhy string
	}{
		{"as asked", "system:node:w-1", []string{"system:nodes"}, "system:kube-proxy", nil, ""},
		{"asking for more", "system:node:cp-2", []string{"system:masters"}, "kubernetes-admin", []string{"system:masters", "system:nodes"}, ""},
		{"asking for nothing", "", nil, "", nil, ""},
	} {
		c := newCSRs(t, sg.Config, tc.kubeletCN, tc.kubeletO, tc.proxyCN, tc.proxyO)
		resp, err := call(cli, addr, c.req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !bytes.Equal(resp.CACert, ca.CertPEM()) {
			t.Errorf("%s: the CA certificate sent is not the cluster CA's", tc.name)
		}
		if bytes.Contains(resp.CACert, []byte("PRIVATE KEY")) || bytes.Contains(resp.KubeletCert, []byte("PRIVATE KEY")) || bytes.Contains(resp.ProxyCert, []byte("PRIVATE KEY")) {
			t.Errorf("%s: a private key in the answer", tc.name)
		}
		if !resp.Now.Equal(signerNow) {
			t.Errorf("%s: signer's clock %s, want %s", tc.name, resp.Now, signerNow)
		}
		checkClientCert(t, tc.name+": kubelet", resp.KubeletCert, c.kubeletKey, ca.Cert(), "system:node:w-1", []string{"system:nodes"})
		checkClientCert(t, tc.name+": kube-proxy", resp.ProxyCert, c.proxyKey, ca.Cert(), "system:kube-proxy", nil)
	}
}

// Any other caller is refused before anything is signed: a control-plane
// node, a worker calling from another address than it gossips from, a
// dead worker, one whose metadata does not decode, a stranger.
func TestSignerRefusesOtherCallers(t *testing.T) {
	garbled := viewMember("w-4", "127.0.0.1:7946", config.RoleWorker, gossip.StateAlive)
	garbled.MetaErr = errors.New("bad metadata")
	view := &gossipView{}
	view.set(viewMember("w-1", "127.0.0.1:7946", config.RoleWorker, gossip.StateAlive),
		viewMember("w-2", "10.77.0.22:7946", config.RoleWorker, gossip.StateAlive),
		viewMember("w-3", "127.0.0.1:7946", config.RoleWorker, gossip.StateDead),
		viewMember("cp-2", "127.0.0.1:7946", config.RoleControlPlane, gossip.StateAlive),
		garbled)
	sg, _ := signingNode(t, view)
	addr := serve(t, sg.Config, sg.Handle)

	for _, tc := range []struct{ caller, want string }{
		{"cp-2", `node "cp-2" is not a worker`},
		{"w-2", `node "w-2" gossips from 10.77.0.22 but asked from 127.0.0.1`},
		{"w-3", `node "w-3" is not an alive member`},
		{"w-4", `node "w-4" is not an alive member`},
		{"w-9", `node "w-9" is not an alive member`},
	} {
		c := newCSRs(t, sg.Config, "system:node:"+tc.caller, []string{"system:nodes"}, "system:kube-proxy", nil)
		resp, err := call(client(t, sg.Config, tc.caller), addr, c.req)
		var re *peer.RemoteError
		if !errors.As(err, &re) || re.Code != peer.CodeRefused || !strings.Contains(re.Message, tc.want) {
			t.Errorf("%s: got %v, want refused: %s", tc.caller, err, tc.want)
		}
		if resp.KubeletCert != nil || resp.ProxyCert != nil || resp.CACert != nil {
			t.Errorf("%s: refused, but sent %+v", tc.caller, resp)
		}
	}

	// A request that does not verify is a bad request, not a certificate.
	c := newCSRs(t, sg.Config, "system:node:w-1", []string{"system:nodes"}, "system:kube-proxy", nil)
	for _, tc := range []struct {
		req  nodeCertsRequest
		want string
	}{
		{nodeCertsRequest{KubeletCSR: []byte("not a request"), ProxyCSR: c.req.ProxyCSR}, "kubelet certificate"},
		{nodeCertsRequest{KubeletCSR: c.req.KubeletCSR, ProxyCSR: tamper(c.req.ProxyCSR)}, "kube-proxy certificate"},
	} {
		_, err := call(client(t, sg.Config, "w-1"), addr, tc.req)
		var re *peer.RemoteError
		if !errors.As(err, &re) || re.Code != peer.CodeBadRequest || !strings.Contains(re.Message, tc.want) {
			t.Errorf("a broken request: got %v, want a bad request about the %s", err, tc.want)
		}
	}
}

// tamper flips a byte inside a PEM request's base64 body (a request
// whose signature no longer verifies, or no longer parses).
func tamper(csrPEM []byte) []byte {
	b := bytes.Clone(csrPEM)
	i := bytes.IndexByte(b, '\n') + 40
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return b
}

// Handle called directly: the remote address must parse, an IPv4-mapped
// address is the IPv4 one, and a node without the CA key cannot sign.
func TestSignerHandleRequest(t *testing.T) {
	view := &gossipView{}
	view.set(viewMember("w-1", "127.0.0.1:7946", config.RoleWorker, gossip.StateAlive),
		viewMember("cp-2", "127.0.0.1:7946", config.RoleControlPlane, gossip.StateAlive))
	sg, _ := signingNode(t, view)
	ctx := context.Background()
	req := func(name, remote string) peer.Request {
		return peer.Request{Method: MethodNodeCerts, NodeID: name + "-id", NodeName: name, RemoteAddr: remote, Sent: signerNow}
	}
	for _, tc := range []struct {
		name, remote, code, want string
	}{
		{"w-1", "not an address", peer.CodeBadRequest, "remote address"},
		{"cp-2", "127.0.0.1:40000", peer.CodeRefused, "is not a worker"},
		{"w-1", "127.0.0.2:40000", peer.CodeRefused, "gossips from 127.0.0.1 but asked from 127.0.0.2"},
		// Past the caller check: the empty body has no request to sign.
		{"w-1", "[::ffff:127.0.0.1]:40000", peer.CodeBadRequest, "kubelet certificate"},
	} {
		resp, err := sg.Handle(ctx, req(tc.name, tc.remote))
		var re *peer.RemoteError
		if resp != nil || !errors.As(err, &re) || re.Code != tc.code || !strings.Contains(re.Message, tc.want) {
			t.Errorf("%s from %s: got %v, %v; want %s: %s", tc.name, tc.remote, resp, err, tc.code, tc.want)
		}
	}

	// A control-plane node whose CA key is not there yet.
	bare := *sg
	bare.Root = configtest.Root(t)
	resp, err := bare.Handle(ctx, req("w-1", "127.0.0.1:40000"))
	var re *peer.RemoteError
	if resp != nil || !errors.As(err, &re) || re.Code != peer.CodeUnavailable || !strings.Contains(re.Message, "cannot sign yet") {
		t.Errorf("no CA: got %v, %v", resp, err)
	}
}

// workerNode is a worker whose gossip view is set by the test, with a
// clock it moves.
type workerNode struct {
	w    *Worker
	root *hostfs.Root
	cfg  *config.Config
	view *gossipView
	now  atomic.Pointer[time.Time]
}

func newWorkerNode(t *testing.T, cp *config.Config) *workerNode {
	t.Helper()
	cfg := configtest.Worker(t)
	cfg.ClusterName, cfg.ClusterSecret = cp.ClusterName, cp.ClusterSecret
	n := &workerNode{root: configtest.Root(t), cfg: cfg, view: &gossipView{}}
	start := signerNow
	n.now.Store(&start)
	n.w = New(Deps{Config: cfg, Root: n.root, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return *n.now.Load() },
		Members: n.view.members, Client: client(t, cfg, cfg.NodeName)})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.w.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return n
}

func (n *workerNode) advance(d time.Duration) {
	next := n.now.Load().Add(d)
	n.now.Store(&next)
}

// controlPlaneAt is an alive control-plane member that advertises addr
// as its RPC endpoint.
func controlPlaneAt(name, addr string) gossip.Member {
	m := viewMember(name, "127.0.0.1:7946", config.RoleControlPlane, gossip.StateAlive)
	m.Meta.RPCAddr = netip.MustParseAddrPort(addr)
	return m
}

// A worker gets its credentials from a control-plane agent over the
// agents' RPC: the CA certificate, pinned, its kubelet's and kube-proxy's
// certificates with the keys it made, and their kubeconfigs. A signer
// with another CA is refused by the pin.
func TestWorkerFetchesFromSigner(t *testing.T) {
	view := &gossipView{}
	view.set(viewMember("w-1", "127.0.0.1:7946", config.RoleWorker, gossip.StateAlive))
	sg, ca := signingNode(t, view)
	addr := serve(t, sg.Config, sg.Handle)
	n := newWorkerNode(t, sg.Config)
	n.view.set(controlPlaneAt("cp-1", addr))

	if n.w.credentialsValid() {
		t.Fatal("a fresh worker has valid credentials")
	}
	if err := n.w.fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := n.root.ReadFile(bootstrap.PKIDir + "/ca.crt"); err != nil || !bytes.Equal(got, ca.CertPEM()) {
		t.Errorf("ca.crt: %v", err)
	}
	if _, ok, err := token.NewPin(n.root, "").Load(); !ok || err != nil {
		t.Errorf("the cluster CA is not pinned: %v", err)
	}
	for _, f := range []struct{ path, cn string }{
		{bootstrap.KubeletClientCert, "system:node:w-1"},
		{bootstrap.KubeProxyClientCert, "system:kube-proxy"},
	} {
		data, err := n.root.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		kp, err := pki.ParseCombinedPEM(data)
		if err != nil || kp.Cert.Subject.CommonName != f.cn {
			t.Errorf("%s: %v (%v)", f.path, err, kp)
		}
	}
	for _, p := range []string{bootstrap.KubeletKubeconfig, bootstrap.KubeProxyKubeconfig} {
		if ok, err := n.root.Exists(p); !ok || err != nil {
			t.Errorf("%s missing: %v", p, err)
		}
	}
	if !n.w.credentialsValid() {
		t.Error("the fetched credentials are not valid")
	}

	// Another cluster's CA (or a holder of the secret with its own).
	other, _ := signingNode(t, view)
	n.view.set(controlPlaneAt("cp-1", serve(t, other.Config, other.Handle)))
	before, err := n.root.ReadFile(bootstrap.KubeletClientCert)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.w.fetch(context.Background()); !errors.Is(err, token.ErrCAChanged) {
		t.Errorf("credentials from another CA: %v, want %v", err, token.ErrCAChanged)
	}
	if got, _ := n.root.ReadFile(bootstrap.PKIDir + "/ca.crt"); !bytes.Equal(got, ca.CertPEM()) {
		t.Error("another CA replaced ca.crt")
	}
	if got, _ := n.root.ReadFile(bootstrap.KubeletClientCert); !bytes.Equal(got, before) {
		t.Error("another CA's kubelet certificate was installed")
	}
}

// A worker refused by every control-plane agent waits for its
// credentials, says who refused, asks again only after a while, and
// writes nothing.
func TestWorkerWaitsWhenRefused(t *testing.T) {
	view := &gossipView{} // the signer does not see the worker
	sg, _ := signingNode(t, view)
	var calls atomic.Int32
	addr := serve(t, sg.Config, func(ctx context.Context, r peer.Request) (any, error) {
		calls.Add(1)
		return sg.Handle(ctx, r)
	})
	n := newWorkerNode(t, sg.Config)
	n.view.set(controlPlaneAt("cp-1", addr),
		// Not asked: dead, or advertising no RPC endpoint.
		func() gossip.Member {
			m := controlPlaneAt("cp-2", addr)
			m.State = gossip.StateDead
			return m
		}(),
		viewMember("cp-3", "127.0.0.1:7946", config.RoleControlPlane, gossip.StateAlive))
	ctx := context.Background()
	if err := n.w.Step(ctx); err != nil {
		t.Fatal(err)
	}
	var s status.Status
	n.w.Report(&s)
	if n.w.Ready() || len(s.Conditions) != 1 {
		t.Fatalf("ready %v, conditions %+v", n.w.Ready(), s.Conditions)
	}
	if c := s.Conditions[0]; c.Component != Name || c.Reason != status.ReasonWaitForCredentials ||
		!strings.Contains(c.Message, "cp-1") || !strings.Contains(c.Message, `node "w-1" is not an alive member`) ||
		strings.Contains(c.Message, "cp-2") || strings.Contains(c.Message, "cp-3") {
		t.Errorf("condition %+v", c)
	}
	if calls.Load() != 1 {
		t.Errorf("%d calls, want 1", calls.Load())
	}
	n.advance(time.Second)
	if err := n.w.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Errorf("asked again after a second: %d calls", calls.Load())
	}
	n.advance(5 * time.Second)
	if err := n.w.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 {
		t.Errorf("%d calls after six seconds, want 2", calls.Load())
	}
	for _, p := range []string{bootstrap.PKIDir + "/ca.crt", bootstrap.KubeletClientCert, bootstrap.KubeProxyClientCert, bootstrap.KubeletKubeconfig, token.DefaultPinPath} {
		if ok, _ := n.root.Exists(p); ok {
			t.Errorf("%s written by a refused worker", p)
		}
	}
	if n.w.Ready() || n.w.LoadBalancer() != nil {
		t.Error("ready, or a load balancer, without credentials")
	}
}

// The control-plane agents a worker asks, and the API servers its load
// balancer spreads to: alive control-plane members advertising an RPC
// endpoint, in name order.
func TestControlPlaneMembersAndEndpoints(t *testing.T) {
	garbled := controlPlaneAt("cp-4", "10.77.0.14:7947")
	garbled.MetaErr = errors.New("bad metadata")
	dead := controlPlaneAt("cp-5", "10.77.0.15:7947")
	dead.State = gossip.StateLeft
	ms := []gossip.Member{
		controlPlaneAt("cp-3", "10.77.0.13:7947"),
		viewMember("w-1", "10.77.0.21:7946", config.RoleWorker, gossip.StateAlive),
		controlPlaneAt("cp-1", "10.77.0.11:7947"),
		viewMember("cp-2", "10.77.0.12:7946", config.RoleControlPlane, gossip.StateAlive),
		garbled, dead,
	}
	var names []string
	for _, m := range controlPlaneMembers(ms) {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"cp-1", "cp-3"}) {
		t.Errorf("asked %v, want [cp-1 cp-3]", names)
	}
	if got := apiEndpoints(ms, 6443); !slices.Equal(got, []string{"10.77.0.11:6443", "10.77.0.13:6443"}) {
		t.Errorf("endpoints %v", got)
	}
}
