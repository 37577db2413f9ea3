package workercreds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/agent/joinserver"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/internal/etcdtest"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/token"
)

// cluster is a control-plane node serving the join endpoint on loopback:
// its cluster CA on disk, the token list in a real etcd.
type cluster struct {
	cfg        *config.Config
	ca         *pki.Authority
	store      *token.Store
	srv        *joinserver.Server
	mu         sync.Mutex
	registered map[string]bool
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	cfg := configtest.ControlPlane(t)
	cfg.Join.Port = configtest.FreePort(t)
	root := configtest.Root(t)
	ca, _, err := pki.NewStore(root, bootstrap.PKIOptions(cfg)).EnsureCA(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{cfg: cfg, ca: ca, store: token.NewStore(etcdtest.Start(t)), registered: map[string]bool{}}
	c.srv = joinserver.New(joinserver.Deps{
		Config: cfg, Root: root, Log: slog.New(slog.DiscardHandler),
		Members: func() []gossip.Member { return nil },
		Registered: func(_ context.Context, name string) (bool, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.registered[name], nil
		},
		Tokens:            c.store,
		ControlPlaneNames: func(context.Context) ([]string, error) { return []string{"cp-1", "cp-2", "cp-3"}, nil },
	})
	if err := c.srv.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.srv.Stop(context.Background()) })
	return c
}

// newToken adds a worker token valid for ttl to the cluster's list.
func (c *cluster) newToken(t *testing.T, ttl time.Duration) token.Token {
	t.Helper()
	tok, err := token.New(pki.CAHash(c.ca.Cert()))
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := token.NewRecord(tok, []token.Usage{token.UsageWorker}, time.Now(), ttl)
	if err := c.store.Add(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return tok
}

// worker is a worker named name joining c with tok.
func (c *cluster) worker(t *testing.T, name string, tok string) (*Worker, *hostfs.Root) {
	t.Helper()
	cfg := configtest.Parse(t, configtest.WorkerOf(configtest.ControlPlaneTOML(t), name))
	cfg.Join.Token = config.Secret(tok)
	cfg.Join.Servers = []string{"127.0.0.1"}
	cfg.Join.Port = c.cfg.Join.Port
	root := configtest.Root(t)
	return New(Deps{Config: cfg, Root: root, Log: slog.New(slog.DiscardHandler), Members: func() []gossip.Member { return nil }}), root
}

// A worker joins with a token: it gets the CA (pinned), its kubelet's and
// kube-proxy's certificates for the keys it made, their kubeconfigs and
// the gossip key; afterwards it renews with its kubelet certificate
// alone, even once the token is deleted.
func TestWorkerJoinsWithAToken(t *testing.T) {
	c := startCluster(t)
	tok := c.newToken(t, time.Hour)
	w, root := c.worker(t, "w-1", tok.String())
	if w.credentialsValid() {
		t.Fatal("a fresh worker has valid credentials")
	}
	if err := w.fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := root.ReadFile(bootstrap.PKIDir + "/ca.crt"); err != nil || !bytes.Equal(got, c.ca.CertPEM()) {
		t.Errorf("ca.crt: %v", err)
	}
	if h, ok, err := token.NewPin(root, "").Load(); !ok || err != nil || h != tok.CAHash() {
		t.Errorf("the cluster CA is not pinned: %s %v", h, err)
	}
	for _, f := range []struct{ path, cn string }{
		{bootstrap.KubeletClientCert, "system:node:w-1"},
		{bootstrap.KubeProxyClientCert, "system:kube-proxy"},
	} {
		data, err := root.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if kp, err := pki.ParseCombinedPEM(data); err != nil || kp.Cert.Subject.CommonName != f.cn {
			t.Errorf("%s: %v", f.path, err)
		}
	}
	key, err := gossip.ReadKeyFile(root, bootstrap.GossipKeyFile)
	want, _ := gossip.DeriveKey([]byte(configtest.TestClusterSecret))
	if err != nil || !bytes.Equal(key, want) {
		t.Errorf("gossip key: %v", err)
	}
	if fi, err := root.Stat(bootstrap.GossipKeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("gossip key mode: %v %v", fi, err)
	}
	if !w.credentialsValid() {
		t.Error("the credentials are not valid")
	}

	// Registered now, and the token gone: the kubelet certificate alone
	// renews.
	c.mu.Lock()
	c.registered["w-1"] = true
	c.mu.Unlock()
	if err := c.store.Delete(context.Background(), tok.ID()); err != nil {
		t.Fatal(err)
	}
	before, _ := root.ReadFile(bootstrap.KubeletClientCert)
	if err := w.fetch(context.Background()); err != nil {
		t.Fatalf("renewal with the kubelet certificate: %v", err)
	}
	if after, _ := root.ReadFile(bootstrap.KubeletClientCert); bytes.Equal(before, after) {
		t.Error("the renewal installed nothing new")
	}

	// Its Node deleted: the certificate renews nothing, and the deleted
	// token does not help; a new token joins it again.
	c.mu.Lock()
	delete(c.registered, "w-1")
	c.mu.Unlock()
	if err := w.fetch(context.Background()); err == nil || !strings.Contains(err.Error(), `node "w-1" is not registered`) ||
		!strings.Contains(err.Error(), "not a token of this cluster") {
		t.Errorf("renewal of a deleted Node: %v", err)
	}
	w.d.Config.Join.Token = config.Secret(c.newToken(t, time.Hour).String())
	if err := w.fetch(context.Background()); err != nil {
		t.Errorf("a new token for a deleted Node: %v", err)
	}
}

// Every refusal names its cause, and a refused worker writes nothing.
func TestWorkerRefused(t *testing.T) {
	c := startCluster(t)
	good := c.newToken(t, time.Hour)
	other, err := token.New("sha256:" + strings.Repeat("cd", 32))
	if err != nil {
		t.Fatal(err)
	}
	expired := c.newToken(t, time.Nanosecond)
	time.Sleep(1100 * time.Millisecond)
	c.mu.Lock()
	c.registered["w-taken"] = true
	c.mu.Unlock()
	for _, tc := range []struct {
		name, node, token, want string
	}{
		{"a token the cluster never made", "w-1", mustToken(t, c).String(), "not a token of this cluster"},
		{"an expired token", "w-1", expired.String(), "join token expired"},
		{"a token pinning another CA", "w-1", other.String(), "is not the one the join token pins"},
		{"a control-plane node's name", "cp-2", good.String(), `"cp-2" is a control-plane node's name`},
		{"a registered node's name", "w-taken", good.String(), "kubectl delete node w-taken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, root := c.worker(t, tc.node, tc.token)
			err := w.fetch(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("fetch = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.token) {
				t.Error("the error shows the token")
			}
			// The status says refused (join exits 5), naming the cause.
			if err := w.Step(context.Background()); err != nil {
				t.Fatal(err)
			}
			var s status.Status
			w.Report(&s)
			if len(s.Conditions) != 1 || !s.Conditions[0].Refused || s.Conditions[0].Reason != status.ReasonRefused ||
				!strings.Contains(s.Conditions[0].Message, tc.want) {
				t.Errorf("status after a refusal: %+v", s.Conditions)
			}
			for _, p := range []string{bootstrap.PKIDir + "/ca.crt", bootstrap.KubeletClientCert, bootstrap.GossipKeyFile, token.DefaultPinPath} {
				if ok, _ := root.Exists(p); ok {
					t.Errorf("%s written by a refused worker", p)
				}
			}
		})
	}
}

// mustToken is a token for c's CA that is in no list.
func mustToken(t *testing.T, c *cluster) token.Token {
	tok, err := token.New(pki.CAHash(c.ca.Cert()))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// A worker no join endpoint answers waits for its credentials, by
// reason, and is not ready; nothing is written.
func TestWorkerWaitsForCredentials(t *testing.T) {
	cfg := configtest.Worker(t)
	cfg.Join.Servers = []string{"127.0.0.1"}
	cfg.Join.Port = configtest.FreePort(t)
	w := New(Deps{Config: cfg, Root: configtest.Root(t), Log: slog.New(slog.DiscardHandler), Members: func() []gossip.Member { return nil }})
	if err := w.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	var s status.Status
	w.Report(&s)
	if w.Ready() || len(s.Conditions) != 1 || s.Conditions[0].Reason != status.ReasonWaitForCredentials || s.Conditions[0].Refused ||
		!strings.Contains(s.Conditions[0].Message, "connection refused") {
		t.Errorf("ready %v, conditions %+v", w.Ready(), s.Conditions)
	}
	if w.LoadBalancer() != nil {
		t.Error("a load balancer runs before the worker has credentials")
	}
	if err := w.Stop(context.Background()); err != nil {
		t.Error(err)
	}
}

func controlPlaneAt(name, addr string) gossip.Member {
	m := gossip.Member{Name: name, Addr: netip.MustParseAddrPort(addr), State: gossip.StateAlive, Meta: gossip.Meta{Role: config.RoleControlPlane}}
	m.Meta.RPCAddr = netip.MustParseAddrPort(addr)
	return m
}

// The join endpoints a worker asks (its servers, then the control-plane
// nodes of the gossip view) and the API servers its load balancer
// spreads to: alive control-plane members, in name order.
func TestJoinServersAndEndpoints(t *testing.T) {
	garbled := controlPlaneAt("cp-4", "10.77.0.14:7947")
	garbled.MetaErr = errors.New("bad metadata")
	dead := controlPlaneAt("cp-5", "10.77.0.15:7947")
	dead.State = gossip.StateLeft
	ms := []gossip.Member{
		controlPlaneAt("cp-3", "10.77.0.13:7947"),
		{Name: "w-1", Addr: netip.MustParseAddrPort("10.77.0.21:7946"), State: gossip.StateAlive, Meta: gossip.Meta{Role: config.RoleWorker}},
		controlPlaneAt("cp-1", "10.77.0.11:7947"),
		garbled, dead,
	}
	cfg := configtest.Worker(t)
	if got, want := joinServers(cfg, ms), []string{"127.0.0.1:7949", "10.77.0.11:7949", "10.77.0.13:7949"}; !slices.Equal(got, want) {
		t.Errorf("join servers %v, want %v", got, want)
	}
	if got := apiEndpoints(ms, 6443); !slices.Equal(got, []string{"10.77.0.11:6443", "10.77.0.13:6443"}) {
		t.Errorf("endpoints %v", got)
	}
}

// Refused only when every answer is one an operator must act on: one
// server down, or a renewal's certificate answered 503 beside an old
// token's refusal, keeps the worker waiting.
func TestRefusedOnlyWhenEveryAnswerIs(t *testing.T) {
	no := &refusal{code: 401, msg: "join token expired"}
	pin := fmt.Errorf("%w: another CA", token.ErrCAMismatch)
	down := errors.New("dial tcp 10.0.0.12:7949: connection refused")
	busy := errors.New("answered 503 Service Unavailable")
	wrap := func(errs ...error) error {
		return fmt.Errorf("no control-plane agent signed this worker's certificates: %w", errors.Join(errs...))
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"every server refuses", wrap(fmt.Errorf("a: %w", no), fmt.Errorf("b: %w", no)), true},
		{"a CA mismatch and a refusal", wrap(pin, no), true},
		{"one server down", wrap(no, down), false},
		{"a renewal: certificate 503, old token refused", wrap(busy, no), false},
		{"nothing answered", wrap(down), false},
		{"no error at all", wrap(), false},
	} {
		if got := refused(tc.err); got != tc.want {
			t.Errorf("%s: refused = %v, want %v", tc.name, got, tc.want)
		}
	}
}
