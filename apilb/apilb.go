package apilb

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultListen is where the balancer listens when Options.Listen is
// empty, the address the node's kubeconfigs point at.
const DefaultListen = "127.0.0.1:6444"

// Defaults for Options.Interval and Options.Timeout.
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = 2 * time.Second
)

// Options configures a load balancer.
type Options struct {
	// Listen is the local address to accept connections on
	// (default DefaultListen).
	Listen string
	// HealthTLS is the TLS configuration of the health probes, an
	// HTTPS GET /readyz to every endpoint: the agent's client
	// certificate and the cluster CA. With ServerName empty an
	// endpoint's certificate is verified against its host (the API
	// server's advertise address is in its SANs). Required.
	HealthTLS *tls.Config
	// Interval is the time between two probes of an endpoint
	// (default DefaultInterval).
	Interval time.Duration
	// Timeout bounds a dial to an endpoint and a probe (default
	// DefaultTimeout).
	Timeout time.Duration
	// FailureThreshold is how many probes in a row must time out or
	// fail to connect before a healthy endpoint is called unhealthy
	// (default DefaultFailureThreshold): on a loaded host one slow
	// answer must not cut every watch of a good server. An answer that
	// is not 200 (a server shutting down) and a failed dial of a
	// proxied connection count at once.
	FailureThreshold int
	// Log receives health transitions (default: discarded).
	Log *slog.Logger
}

// DefaultFailureThreshold is Options.FailureThreshold's default.
const DefaultFailureThreshold = 3

// statusError is a probe's answer other than 200.
type statusError struct{ msg string }

func (e *statusError) Error() string { return e.msg }

// EndpointStatus is an endpoint as the balancer sees it.
type EndpointStatus struct {
	// Address is the endpoint's host:port.
	Address string `json:"address"`
	// Healthy is true when the last probe answered 200 and no dial
	// failed since.
	Healthy bool `json:"healthy"`
	// Since is when the endpoint entered its current health; zero
	// while its health is unknown (not probed yet).
	Since time.Time `json:"since,omitzero"`
	// LastError is the latest probe or dial error, kept while the
	// endpoint is unhealthy; empty when healthy.
	LastError string `json:"lastError,omitempty"`
	// Connections is how many connections are proxied to it now.
	Connections int `json:"connections"`
}

// health is an endpoint's state. Its order is the order in which
// endpoints are tried.
type health int

const (
	healthy health = iota
	unknown
	unhealthy
)

// endpoint is one API server. Its fields are guarded by LB.mu.
type endpoint struct {
	addr    string
	state   health
	since   time.Time
	lastErr string
	// downs counts transitions to unhealthy, so that a connection
	// dialled before one is not kept after it.
	downs int
	// fails counts probes in a row that timed out or could not connect.
	fails   int
	conns   map[*proxied]struct{}
	total   uint64
	removed bool
	// cancel stops the endpoint's probe loop; nil while none runs.
	cancel context.CancelFunc
}

// proxied is one client connection and its backend.
type proxied struct {
	client, backend net.Conn
}

func (p *proxied) close() {
	p.client.Close()
	p.backend.Close()
}

// LB is a TCP load balancer over API server endpoints. Its methods are
// safe for concurrent use.
type LB struct {
	ln        net.Listener
	log       *slog.Logger
	interval  time.Duration
	timeout   time.Duration
	threshold int
	probes    *http.Client
	dialer    net.Dialer

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
	wg        sync.WaitGroup

	mu      sync.Mutex
	eps     map[string]*endpoint
	order   []string        // endpoints in the order SetEndpoints gave
	next    uint            // round-robin cursor
	runCtx  context.Context // set by Run; probe loops derive from it
	running bool            // Run was called
	stopped bool            // Run is shutting down or done: start nothing more
	failing bool            // the last connection found no endpoint
	dropped uint64          // connections closed for want of an endpoint
}

// New returns a load balancer listening on opts.Listen. It proxies
// nothing until Run is called and endpoints are set.
func New(opts Options) (*LB, error) {
	if opts.HealthTLS == nil {
		return nil, errors.New("apilb: Options.HealthTLS is required (the agent's client certificate and the cluster CA, for the /readyz probes)")
	}
	if opts.Interval < 0 || opts.Timeout < 0 {
		return nil, fmt.Errorf("apilb: negative interval (%s) or timeout (%s)", opts.Interval, opts.Timeout)
	}
	addr := cmp.Or(opts.Listen, DefaultListen)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("apilb: listen on %s: the address is already in use, most likely by another agent or another distribution's API load balancer (k3s and rke2 use 6444 too); stop that process (find it with `ss -ltnp 'sport = %s'`) or choose another listen address: %w",
				addr, portOf(addr), err)
		}
		return nil, fmt.Errorf("apilb: listen on %s: %w", addr, err)
	}
	timeout := cmp.Or(opts.Timeout, DefaultTimeout)
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &LB{
		ln:        ln,
		log:       log,
		interval:  cmp.Or(opts.Interval, DefaultInterval),
		threshold: cmp.Or(opts.FailureThreshold, DefaultFailureThreshold),
		timeout:   timeout,
		dialer:    net.Dialer{Timeout: timeout},
		closed:    make(chan struct{}),
		eps:       map[string]*endpoint{},
	}
	l.probes = &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			// Never through an HTTP proxy from the environment.
			Proxy:       nil,
			DialContext: (&net.Dialer{Timeout: timeout}).DialContext,
			// A probe checks what a new connection would meet: a
			// kept-alive connection would still answer after its
			// server stopped accepting.
			DisableKeepAlives:   true,
			TLSClientConfig:     opts.HealthTLS.Clone(),
			TLSHandshakeTimeout: timeout,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return l, nil
}

// portOf returns addr's ":port", or addr when it has none.
func portOf(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil {
		return ":" + port
	}
	return addr
}

// Addr returns the address the balancer listens on.
func (l *LB) Addr() net.Addr { return l.ln.Addr() }

// SetEndpoints replaces the endpoints (host:port of API servers).
// Endpoints it already knows keep their health and connections; new
// ones start unknown and are probed at once; the connections to
// removed ones are closed. Invalid addresses are logged and skipped.
func (l *LB) SetEndpoints(eps []string) {
	var order []string
	seen := map[string]bool{}
	for _, e := range eps {
		host, port, err := net.SplitHostPort(strings.TrimSpace(e))
		if err != nil || host == "" || port == "" {
			l.log.Warn("ignoring invalid API server endpoint", "endpoint", e, "err", err)
			continue
		}
		a := net.JoinHostPort(host, port)
		if !seen[a] {
			seen[a] = true
			order = append(order, a)
		}
	}

	var closing []*proxied
	l.mu.Lock()
	for a, ep := range l.eps {
		if seen[a] {
			continue
		}
		ep.removed = true
		if ep.cancel != nil {
			ep.cancel()
		}
		for p := range ep.conns {
			closing = append(closing, p)
		}
		delete(l.eps, a)
		l.log.Info("API server endpoint removed", "endpoint", a, "connections", len(ep.conns))
	}
	for _, a := range order {
		if _, ok := l.eps[a]; ok {
			continue
		}
		ep := &endpoint{addr: a, state: unknown, conns: map[*proxied]struct{}{}}
		l.eps[a] = ep
		l.startProbesLocked(ep)
		l.log.Info("API server endpoint added", "endpoint", a)
	}
	l.order = order
	l.mu.Unlock()

	for _, p := range closing {
		p.close()
	}
}

// startProbesLocked starts ep's probe loop if Run is running.
func (l *LB) startProbesLocked(ep *endpoint) {
	if l.runCtx == nil || l.stopped || ep.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(l.runCtx)
	ep.cancel = cancel
	l.wg.Add(1)
	go l.probeLoop(ctx, ep)
}

// Status returns the endpoints, sorted by address.
func (l *LB) Status() []EndpointStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]EndpointStatus, 0, len(l.eps))
	for _, ep := range l.eps {
		out = append(out, EndpointStatus{
			Address:     ep.addr,
			Healthy:     ep.state == healthy,
			Since:       ep.since,
			LastError:   ep.lastErr,
			Connections: len(ep.conns),
		})
	}
	slices.SortFunc(out, func(a, b EndpointStatus) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// Close stops the balancer as the end of Run's context does: a running
// Run closes everything and returns; without Run, it closes the
// listener. Close is idempotent and does not wait for Run.
func (l *LB) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	l.mu.Lock()
	running := l.running
	l.mu.Unlock()
	if !running {
		return l.shutdown()
	}
	return nil
}

// shutdown closes the listener and every proxied connection and stops
// the probe loops; nothing new starts afterwards.
func (l *LB) shutdown() error {
	l.mu.Lock()
	l.stopped = true
	var closing []*proxied
	for _, ep := range l.eps {
		if ep.cancel != nil {
			ep.cancel()
		}
		for p := range ep.conns {
			closing = append(closing, p)
		}
	}
	l.mu.Unlock()
	err := l.ln.Close()
	for _, p := range closing {
		p.close()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Run accepts and proxies connections and probes the endpoints until
// ctx ends or Close is called. It then closes the listener and every
// proxied connection, and returns once all its goroutines have ended.
// It returns nil when stopped that way (or when Close came before it),
// and an error if it was already called or the listener failed.
func (l *LB) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	l.mu.Lock()
	if l.running {
		l.mu.Unlock()
		return errors.New("apilb: Run called twice")
	}
	if l.stopped { // Close came first
		l.mu.Unlock()
		return nil
	}
	l.running = true
	l.runCtx = ctx
	for _, a := range l.order {
		l.startProbesLocked(l.eps[a])
	}
	l.mu.Unlock()
	l.log.Info("API load balancer listening", "addr", l.ln.Addr().String())

	// Stop on ctx or Close: unblock Accept by closing the listener.
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-l.closed:
		}
		cancel()
		l.shutdown()
		close(stopped)
	}()

	err := l.accept(ctx)
	cancel()
	<-stopped
	l.wg.Wait()
	l.log.Info("API load balancer stopped", "addr", l.ln.Addr().String())
	return err
}

// accept runs the accept loop until the listener is closed.
func (l *LB) accept(ctx context.Context) error {
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-l.closed:
				return nil
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("apilb: accept on %s: %w", l.ln.Addr(), err)
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("API load balancer: accept failed; retrying", "err", err, "in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		backoff = 0
		l.mu.Lock()
		if l.stopped {
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.handle(ctx, c)
	}
}

// candidate is an endpoint to try, with its downs count when chosen.
type candidate struct {
	ep    *endpoint
	downs int
}

// candidates returns every endpoint in the order to try them for one
// new connection: the healthy ones, then the unknown, then the
// unhealthy (fail open); each group rotated by the round-robin cursor.
func (l *LB) candidates() []candidate {
	l.mu.Lock()
	defer l.mu.Unlock()
	var groups [unhealthy + 1][]*endpoint
	for _, a := range l.order {
		ep := l.eps[a]
		groups[ep.state] = append(groups[ep.state], ep)
	}
	out := make([]candidate, 0, len(l.order))
	for _, g := range groups {
		for i := range g {
			ep := g[(l.next+uint(i))%uint(len(g))]
			out = append(out, candidate{ep, ep.downs})
		}
	}
	l.next++
	return out
}

// handle connects client to the first endpoint that accepts and proxies
// between them.
func (l *LB) handle(ctx context.Context, client net.Conn) {
	defer l.wg.Done()
	var p *proxied
	var ep *endpoint
	var errs []string
	for _, c := range l.candidates() {
		backend, err := l.dialer.DialContext(ctx, "tcp", c.ep.addr)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			l.setHealth(c.ep, fmt.Errorf("dial: %w", err), "dial")
			errs = append(errs, err.Error())
			continue
		}
		l.mu.Lock()
		switch {
		case l.stopped:
			l.mu.Unlock()
			backend.Close()
			client.Close()
			return
		case c.ep.removed || c.ep.downs != c.downs:
			// Removed or turned unhealthy while we dialled: its
			// connections were closed, so is this one.
			l.mu.Unlock()
			backend.Close()
			errs = append(errs, c.ep.addr+": went away while connecting")
			continue
		}
		p, ep = &proxied{client: client, backend: backend}, c.ep
		ep.conns[p] = struct{}{}
		ep.total++
		wasFailing := l.failing
		l.failing = false
		l.mu.Unlock()
		if wasFailing {
			l.log.Info("API load balancer: connections get through again", "endpoint", ep.addr)
		}
		break
	}
	if p == nil {
		client.Close()
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		l.dropped++
		wasFailing := l.failing
		l.failing = true
		n := len(l.order)
		l.mu.Unlock()
		msg := "API load balancer: no API server reachable; closing client connection"
		if n == 0 {
			msg = "API load balancer: no API server endpoints known; closing client connection"
		}
		if !wasFailing {
			l.log.Warn(msg, "client", client.RemoteAddr().String(), "errors", errs)
		} else {
			l.log.Debug(msg, "client", client.RemoteAddr().String(), "errors", errs)
		}
		return
	}

	l.pipe(p)

	l.mu.Lock()
	delete(ep.conns, p)
	l.mu.Unlock()
}

// pipe copies between p's client and backend until both directions
// ended, then closes both. A clean EOF is passed on as a half-close;
// an error closes both sides at once. Once the backend has finished,
// the client has l.timeout to finish too.
func (l *LB) pipe(p *proxied) {
	up := make(chan struct{})
	go func() {
		defer close(up)
		_, err := io.Copy(p.backend, p.client)
		if err != nil {
			p.close()
			return
		}
		closeWrite(p.backend)
	}()
	_, err := io.Copy(p.client, p.backend)
	if err != nil {
		p.close()
	} else {
		closeWrite(p.client)
		// Let the client read the end of the stream and close its
		// side (closing now could reset the connection under data it
		// has not read yet), but not forever.
		p.client.SetReadDeadline(time.Now().Add(l.timeout))
	}
	<-up
	p.close()
}

// closeWrite half-closes c, or closes it when it cannot half-close.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// probeLoop probes ep at once, then every interval, until ctx ends.
func (l *LB) probeLoop(ctx context.Context, ep *endpoint) {
	defer l.wg.Done()
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		err := l.probe(ctx, ep.addr)
		if ctx.Err() != nil {
			return
		}
		if !l.tolerate(ep, err) {
			l.setHealth(ep, err, "probe")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tolerate counts a probe's outcome and reports whether it leaves a
// healthy endpoint as it is: a timeout or connection failure below the
// failure threshold. Any answer, and a success, reset the count.
func (l *LB) tolerate(ep *endpoint, err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	var se *statusError
	if err == nil || errors.As(err, &se) {
		ep.fails = 0
		return false
	}
	ep.fails++
	if ep.state == healthy && ep.fails < l.threshold {
		ep.lastErr = err.Error()
		return true
	}
	return false
}

// probe asks addr's /readyz; nil means it answered 200.
func (l *LB) probe(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := l.probes.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	return &statusError{fmt.Sprintf("GET /readyz: %s: %s", resp.Status, failedChecks(body))}
}

// failedChecks summarises a /readyz body: the failed checks of a
// verbose answer ("[-]etcd failed: ..."), or its first line.
func failedChecks(body []byte) string {
	var failed []string
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	for _, line := range lines {
		if name, ok := strings.CutPrefix(line, "[-]"); ok {
			failed = append(failed, strings.TrimSpace(name))
		}
	}
	if len(failed) > 0 {
		return strings.Join(failed, "; ")
	}
	s := strings.TrimSpace(lines[0])
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return cmp.Or(s, "(empty body)")
}

// setHealth records a probe's or dial's outcome for ep (err nil:
// healthy), logs a transition and, when ep turns unhealthy, closes the
// connections proxied to it.
func (l *LB) setHealth(ep *endpoint, err error, source string) {
	var closing []*proxied
	l.mu.Lock()
	if ep.removed || l.stopped {
		l.mu.Unlock()
		return
	}
	prev := ep.state
	if err == nil {
		ep.lastErr = ""
		if prev != healthy {
			ep.state, ep.since = healthy, time.Now()
		}
	} else {
		ep.lastErr = err.Error()
		if prev != unhealthy {
			ep.state, ep.since = unhealthy, time.Now()
			ep.downs++
			for p := range ep.conns {
				closing = append(closing, p)
			}
		}
	}
	l.mu.Unlock()

	switch {
	case err == nil && prev != healthy:
		l.log.Info("API server endpoint healthy", "endpoint", ep.addr, "was", prev.String())
	case err != nil && prev != unhealthy:
		l.log.Warn("API server endpoint unhealthy; closing its connections", "endpoint", ep.addr,
			"was", prev.String(), "by", source, "err", err, "connections", len(closing))
	}
	for _, p := range closing {
		p.close()
	}
}

func (h health) String() string {
	switch h {
	case healthy:
		return "healthy"
	case unhealthy:
		return "unhealthy"
	default:
		return "unknown"
	}
}
