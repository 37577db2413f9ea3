package joinserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/net/netutil"

	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/token"
)

// Name is the component's name.
const Name = "join-endpoint"

// Bounds of the endpoint, which anyone reaching the port may talk to.
const (
	// MaxConns bounds the connections served at once; more wait in the
	// listen backlog.
	MaxConns          = 64
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = time.Minute
	maxHeaderBytes    = 16 << 10
	// pruneInterval is how often expired tokens' records are pruned.
	pruneInterval = time.Hour
)

// Deps is what the component is built from.
type Deps struct {
	Config *config.Config
	Root   *hostfs.Root
	Log    *slog.Logger
	Now    func() time.Time
	// Members is the gossip view: its control-plane nodes' names are
	// not for workers.
	Members func() []gossip.Member
	// Registered tells whether a Node exists (NodesInAPI).
	Registered NodeLookup
	// Tokens and ControlPlaneNames default to the local etcd member's
	// token list and member names (tests give their own).
	Tokens            Tokens
	ControlPlaneNames func(ctx context.Context) ([]string, error)
}

// Server is the join endpoint on a control-plane node: it serves once the
// node has its cluster CA and its etcd member serves (the token list is
// there).
type Server struct {
	d    Deps
	cond *component.Condition

	// etcd is the local member's client, made again when the agent's
	// etcd client certificate is renewed.
	etcd etcdclient.Shared

	mu        sync.Mutex
	stopped   bool
	hs        *http.Server
	addr      net.Addr
	done      chan struct{}
	lastPrune time.Time
	cert      *tls.Certificate
}

var (
	_ component.Component = (*Server)(nil)
	_ component.Reporter  = (*Server)(nil)
)

// New returns the component.
func New(d Deps) *Server {
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Server{d: d, cond: component.NewCondition(Name)}
}

// Name names the component.
func (s *Server) Name() string { return Name }

// Ready reports whether the endpoint serves.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hs != nil
}

// Report adds what the endpoint waits for.
func (s *Server) Report(st *status.Status) { s.cond.Report(st) }

// Addr is where the endpoint listens (nil before it does).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Step starts the endpoint once, then prunes expired tokens hourly.
func (s *Server) Step(ctx context.Context) error {
	if !s.Ready() {
		if err := s.start(ctx); err != nil {
			s.cond.Set(status.ReasonFailed, "the join endpoint: "+err.Error())
			return err
		}
		s.cond.Clear()
	}
	now := s.d.Now()
	s.mu.Lock()
	due := now.Sub(s.lastPrune) >= pruneInterval
	if due {
		s.lastPrune = now
	}
	s.mu.Unlock()
	if due && s.d.Tokens == nil {
		cli, err := s.client()
		if err == nil {
			var pruned []string
			pruned, err = token.NewStore(cli).Prune(ctx, now)
			for _, id := range pruned {
				s.d.Log.Info("pruned an expired join token", "id", id)
			}
		}
		if err != nil {
			s.d.Log.Warn("prune expired join tokens", "err", err)
		}
	}
	return nil
}

// start listens and serves.
func (s *Server) start(ctx context.Context) error {
	opts := bootstrap.PKIOptions(s.d.Config)
	ca, err := pki.NewStore(s.d.Root, opts).LoadAuthority(pki.CA)
	if err != nil {
		return fmt.Errorf("the cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert())
	tlsCfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// A worker's kubelet certificate, when it sends one, must chain
		// to the cluster CA; a first join sends none and a token.
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.servingCert() },
	}
	cfg := s.d.Config
	addr := net.JoinHostPort(cfg.AdvertiseAddress.String(), strconv.Itoa(cfg.Join.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s (join.port): %w", addr, err)
	}
	h := &Handler{
		Config: cfg, Root: s.d.Root, Log: s.d.Log, Now: s.d.Now, Registered: s.d.Registered,
		Tokens: s.d.Tokens, ControlPlaneNames: s.d.ControlPlaneNames,
	}
	if h.Tokens == nil {
		h.Tokens = lazyTokens{s}
	}
	if h.ControlPlaneNames == nil {
		h.ControlPlaneNames = s.controlPlaneNames
	}
	hs := &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:          slog.NewLogLogger(s.d.Log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.ServeTLS(netutil.LimitListener(ln, MaxConns), "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.d.Log.Error("the join endpoint stopped; starting it again", "err", err)
			// Not ready any more: the next step serves again.
			s.mu.Lock()
			if s.hs == hs {
				s.hs = nil
			}
			s.mu.Unlock()
		}
	}()
	s.mu.Lock()
	s.hs, s.addr, s.done = hs, ln.Addr(), done
	s.mu.Unlock()
	s.d.Log.Info("serving workers' joins", "addr", ln.Addr().String())
	return nil
}

// servingCert is the endpoint's certificate, issued in memory from the
// cluster CA and again when it nears its end.
func (s *Server) servingCert() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.d.Config
	if s.cert != nil && s.d.Now().Add(cfg.PKI.RenewBefore.Duration).Before(s.cert.Leaf.NotAfter) {
		return s.cert, nil
	}
	opts := bootstrap.PKIOptions(cfg)
	ca, err := pki.NewStore(s.d.Root, opts).LoadAuthority(pki.CA)
	if err != nil {
		return nil, err
	}
	node := pki.Node{Name: cfg.NodeName, AdvertiseIP: cfg.AdvertiseAddress}
	kp, err := ca.Issue(pki.JoinServingCert(node), opts)
	if err != nil {
		return nil, err
	}
	// The chain carries the CA certificate, so a worker on its first
	// join can check it against the hash its token pins.
	c, err := tls.X509KeyPair(append(append([]byte{}, kp.CertPEM...), ca.CertPEM()...), kp.KeyPEM)
	if err != nil {
		return nil, err
	}
	s.cert = &c
	return s.cert, nil
}

// client is the etcd client of the token list and the member names.
func (s *Server) client() (*clientv3.Client, error) {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return nil, errors.New("the join endpoint is stopping")
	}
	return s.etcd.Get(s.d.Root, s.d.Config)
}

// lazyTokens is the token list of the local etcd.
type lazyTokens struct{ s *Server }

func (l lazyTokens) Check(ctx context.Context, t token.Token, usage token.Usage, now time.Time) error {
	cli, err := l.s.client()
	if err != nil {
		return err
	}
	return token.NewStore(cli).Check(ctx, t, usage, now)
}

// controlPlaneNames are the etcd members' names and those of the
// control-plane nodes the gossip view shows.
func (s *Server) controlPlaneNames(ctx context.Context) ([]string, error) {
	cli, err := s.client()
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.MemberList(mctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, m := range resp.Members {
		names = append(names, m.Name)
	}
	for _, m := range s.d.Members() {
		if m.MetaErr == nil && m.Meta.Role == config.RoleControlPlane {
			names = append(names, m.Name)
		}
	}
	return names, nil
}

// Stop stops serving and closes the etcd client.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	hs, done := s.hs, s.done
	s.hs, s.stopped = nil, true
	s.mu.Unlock()
	var err error
	if hs != nil {
		err = hs.Shutdown(ctx)
		if err != nil {
			_ = hs.Close()
		}
		<-done
	}
	s.etcd.Close()
	return err
}

// ServerAddr is a control-plane node's join endpoint, for workers.
func ServerAddr(addr netip.Addr, port int) string {
	return net.JoinHostPort(addr.String(), strconv.Itoa(port))
}
