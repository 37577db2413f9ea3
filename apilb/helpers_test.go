package apilb

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitTimeout bounds every wait in these tests. It is a deadline for
// something that should happen, never a performance assertion.
const waitTimeout = 20 * time.Second

// waitFor polls cond until it holds, failing the test at waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testPKI is a cluster CA with an API server serving certificate (for
// 127.0.0.1), the agent's client certificate (the probes') and a
// kubelet's client certificate (the proxied clients').
type testPKI struct {
	pool    *x509.CertPool
	server  tls.Certificate
	agent   tls.Certificate
	kubelet tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "apilb-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	serial := int64(1)
	leaf := func(cn string, usage x509.ExtKeyUsage, ips ...net.IP) tls.Certificate {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{
		pool:    pool,
		server:  leaf("kube-apiserver", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1)),
		agent:   leaf("system:ecom-agent:node-1", x509.ExtKeyUsageClientAuth),
		kubelet: leaf("system:node:node-1", x509.ExtKeyUsageClientAuth),
	}
}

// healthTLS is what the agent gives Options.HealthTLS.
func (k *testPKI) healthTLS() *tls.Config {
	return &tls.Config{RootCAs: k.pool, Certificates: []tls.Certificate{k.agent}}
}

// kubeletClient is an HTTPS client like the kubelet's, pointed at the
// balancer: the cluster CA, its own certificate, and one TCP connection
// per request so that every request is balanced anew.
func (k *testPKI) kubeletClient() *http.Client {
	return &http.Client{
		Timeout: waitTimeout,
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{RootCAs: k.pool, Certificates: []tls.Certificate{k.kubelet}},
		},
	}
}

// backend is a fake kube-apiserver: HTTPS requiring a client certificate
// from the cluster CA, with /readyz (status settable), /whoami (its name
// and the client's name) and /watch (an endless chunked stream).
type backend struct {
	name      string
	srv       *httptest.Server
	ready     atomic.Int32 // /readyz status code
	probes    atomic.Int64 // /readyz requests
	probeCN   atomic.Value // CN of the last /readyz client certificate
	hold      chan struct{}
	holdProbe atomic.Bool // /readyz waits for hold (or the request's end)
}

func newBackend(t *testing.T, k *testPKI, name string) *backend {
	t.Helper()
	b := &backend{name: name, hold: make(chan struct{})}
	b.ready.Store(http.StatusOK)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		b.probes.Add(1)
		b.probeCN.Store(r.TLS.PeerCertificates[0].Subject.CommonName)
		if b.holdProbe.Load() {
			select {
			case <-b.hold:
			case <-r.Context().Done():
				return
			}
		}
		code := int(b.ready.Load())
		w.WriteHeader(code)
		if code == http.StatusOK {
			fmt.Fprintln(w, "ok")
		} else {
			fmt.Fprintln(w, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed")
		}
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", b.name, r.TLS.PeerCertificates[0].Subject.CommonName)
	})
	mux.HandleFunc("GET /watch", func(w http.ResponseWriter, r *http.Request) {
		fl := w.(http.Flusher)
		fmt.Fprintf(w, "%s\n", b.name)
		fl.Flush()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
			if _, err := fmt.Fprintln(w, "event"); err != nil {
				return
			}
			fl.Flush()
		}
	})
	b.srv = httptest.NewUnstartedServer(mux)
	b.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{k.server},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    k.pool,
	}
	b.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake errors from the tests' failures on purpose
	b.srv.StartTLS()
	t.Cleanup(b.srv.Close)
	t.Cleanup(func() { // runs first: release held probes before Close waits for them
		if b.holdProbe.Load() {
			close(b.hold)
		}
	})
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// kill is the API server process dying: its port refuses connections
// and its connections are cut.
func (b *backend) kill() {
	b.srv.Listener.Close()
	b.srv.CloseClientConnections()
}

// startLB starts a balancer over eps on a free loopback port, stopped
// (and checked to stop) at the test's end. It returns the balancer and
// a function that stops it and returns Run's error.
func startLB(t *testing.T, k *testPKI, opts Options, eps ...string) (*LB, func() error) {
	t.Helper()
	opts.Listen = "127.0.0.1:0"
	if opts.HealthTLS == nil {
		opts.HealthTLS = k.healthTLS()
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l.SetEndpoints(eps)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(waitTimeout):
				runErr = fmt.Errorf("Run did not return %s after its context ended", waitTimeout)
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return l, stop
}

// whoami asks /whoami through the balancer with a new connection and
// returns the backend's name, checking the backend saw the kubelet's
// own certificate (TLS passed through).
func whoami(t *testing.T, k *testPKI, l *LB) (string, error) {
	t.Helper()
	resp, err := k.kubeletClient().Get("https://" + l.Addr().String() + "/whoami")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	name, cn, _ := strings.Cut(string(body), " ")
	if cn != "system:node:node-1" {
		t.Errorf("backend %s saw client %q, want the kubelet's certificate passed through", name, cn)
	}
	return name, nil
}

// mustWhoami is whoami failing the test on error.
func mustWhoami(t *testing.T, k *testPKI, l *LB) string {
	t.Helper()
	name, err := whoami(t, k, l)
	if err != nil {
		t.Fatalf("request through the balancer: %v", err)
	}
	return name
}

// stream is a watch-like request through the balancer.
type stream struct {
	backend string        // which backend serves it
	events  atomic.Int64  // lines read after the first
	ended   chan struct{} // closed when reading failed (EOF, reset...)
	err     error         // why, once ended is closed
	body    io.Closer
}

func openStream(t *testing.T, k *testPKI, l *LB) *stream {
	t.Helper()
	c := k.kubeletClient()
	c.Timeout = 0 // a watch lasts
	resp, err := c.Get("https://" + l.Addr().String() + "/watch")
	if err != nil {
		t.Fatalf("watch through the balancer: %v", err)
	}
	r := bufio.NewReader(resp.Body)
	first, err := r.ReadString('\n')
	if err != nil {
		resp.Body.Close()
		t.Fatalf("watch through the balancer: first line: %v", err)
	}
	s := &stream{backend: strings.TrimSpace(first), ended: make(chan struct{}), body: resp.Body}
	go func() {
		defer close(s.ended)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				s.err = err
				return
			}
			s.events.Add(1)
		}
	}()
	t.Cleanup(func() {
		resp.Body.Close()
		<-s.ended
	})
	return s
}

// waitEnded waits for the stream to end.
func (s *stream) waitEnded(t *testing.T, why string) {
	t.Helper()
	select {
	case <-s.ended:
		t.Logf("stream to %s ended (%s): %v", s.backend, why, s.err)
	case <-time.After(waitTimeout):
		t.Fatalf("stream to %s still open %s after %s", s.backend, waitTimeout, why)
	}
}

// waitAlive checks the stream still delivers events.
func (s *stream) waitAlive(t *testing.T) {
	t.Helper()
	n := s.events.Load()
	waitFor(t, "stream to "+s.backend+" to deliver more events", func() bool {
		select {
		case <-s.ended:
			t.Fatalf("stream to %s ended: %v", s.backend, s.err)
		default:
		}
		return s.events.Load() >= n+2
	})
}

// statusOf returns addr's status, ok false when the balancer does not
// know it.
func statusOf(l *LB, addr string) (EndpointStatus, bool) {
	for _, s := range l.Status() {
		if s.Address == addr {
			return s, true
		}
	}
	return EndpointStatus{}, false
}

func waitHealthy(t *testing.T, l *LB, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		waitFor(t, a+" healthy", func() bool { s, _ := statusOf(l, a); return s.Healthy })
	}
}

func waitUnhealthy(t *testing.T, l *LB, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		waitFor(t, a+" unhealthy", func() bool { s, ok := statusOf(l, a); return ok && !s.Healthy && !s.Since.IsZero() })
	}
}

// recorder is a slog handler keeping records, to count log lines.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// count returns how many records have msg and endpoint attr ep.
func (r *recorder) count(msg, ep string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		if rec.Message != msg {
			continue
		}
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "endpoint" && a.Value.String() == ep {
				n++
				return false
			}
			return true
		})
	}
	return n
}
