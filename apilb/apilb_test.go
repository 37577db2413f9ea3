package apilb

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// fast probes, for tests that watch health change.
var fast = Options{Interval: 20 * time.Millisecond, Timeout: 5 * time.Second}

// once probes only when an endpoint is added, for tests where health
// must not change behind their back.
var once = Options{Interval: time.Hour, Timeout: 5 * time.Second}

func TestProbeHealthSteersConnections(t *testing.T) {
	k := newPKI(t)
	a, b := newBackend(t, k, "a"), newBackend(t, k, "b")
	l, _ := startLB(t, k, fast, a.addr(), b.addr())
	waitHealthy(t, l, a.addr(), b.addr())
	if cn, _ := a.probeCN.Load().(string); cn != "system:ecom-agent:node-1" {
		t.Errorf("probe presented %q, want the agent's client certificate", cn)
	}

	a.ready.Store(http.StatusInternalServerError)
	waitUnhealthy(t, l, a.addr())
	st, _ := statusOf(l, a.addr())
	if !strings.Contains(st.LastError, "500") || !strings.Contains(st.LastError, "etcd failed") {
		t.Errorf("last error %q, want the /readyz status and its failed check", st.LastError)
	}
	for i := range 10 {
		if got := mustWhoami(t, k, l); got != "b" {
			t.Fatalf("request %d went to %s, which fails /readyz", i, got)
		}
	}

	a.ready.Store(http.StatusOK)
	waitHealthy(t, l, a.addr())
	if st, _ := statusOf(l, a.addr()); st.LastError != "" {
		t.Errorf("healthy endpoint keeps last error %q", st.LastError)
	}
	seen := map[string]int{}
	for range 10 {
		seen[mustWhoami(t, k, l)]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("after a recovered, requests went %v; want both", seen)
	}
}

func TestRoundRobin(t *testing.T) {
	k := newPKI(t)
	bs := []*backend{newBackend(t, k, "a"), newBackend(t, k, "b"), newBackend(t, k, "c")}
	l, _ := startLB(t, k, once, bs[0].addr(), bs[1].addr(), bs[2].addr())
	waitHealthy(t, l, bs[0].addr(), bs[1].addr(), bs[2].addr())

	seen := map[string]int{}
	const n = 30
	for range n {
		seen[mustWhoami(t, k, l)]++
	}
	for _, b := range bs {
		if seen[b.name] != n/len(bs) {
			t.Errorf("round robin over 3 healthy backends: %d requests went %v; want %d each", n, seen, n/len(bs))
			break
		}
	}

	// The same seen through the metrics.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(l.Collector())
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	metrics := rec.Body.String()
	for _, b := range bs {
		for _, want := range []string{
			fmt.Sprintf("ecom_agent_apilb_endpoint_healthy{endpoint=%q} 1", b.addr()),
			fmt.Sprintf("ecom_agent_apilb_endpoint_connections_total{endpoint=%q} %d", b.addr(), seen[b.name]),
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("metrics lack %q:\n%s", want, metrics)
			}
		}
	}
	if !strings.Contains(metrics, "ecom_agent_apilb_dropped_connections_total 0") {
		t.Errorf("metrics lack dropped connections:\n%s", metrics)
	}
}

func TestDialFailover(t *testing.T) {
	k := newPKI(t)
	a, b := newBackend(t, k, "a"), newBackend(t, k, "b")
	// Probes only at the start: only the failed dials can notice a.
	l, _ := startLB(t, k, once, a.addr(), b.addr())
	waitHealthy(t, l, a.addr(), b.addr())

	a.kill()
	for i := range 6 {
		if got := mustWhoami(t, k, l); got != "b" {
			t.Fatalf("request %d went to %s, whose listener is closed", i, got)
		}
	}
	st, _ := statusOf(l, a.addr())
	if st.Healthy || !strings.Contains(st.LastError, "dial") {
		t.Errorf("after a failed dial a is %+v; want unhealthy with the dial error", st)
	}
	if st, _ := statusOf(l, b.addr()); !st.Healthy {
		t.Errorf("b is %+v; want healthy", st)
	}
}

func TestFailOpen(t *testing.T) {
	t.Run("all probes fail", func(t *testing.T) {
		k := newPKI(t)
		a, b := newBackend(t, k, "a"), newBackend(t, k, "b")
		a.ready.Store(http.StatusInternalServerError)
		b.ready.Store(http.StatusServiceUnavailable)
		l, _ := startLB(t, k, fast, a.addr(), b.addr())
		waitUnhealthy(t, l, a.addr(), b.addr())
		for range 4 {
			mustWhoami(t, k, l)
		}
	})
	t.Run("probe credentials wrong", func(t *testing.T) {
		k := newPKI(t)
		a := newBackend(t, k, "a")
		// No client certificate: the API server refuses the probes,
		// the kubelet's own certificate still gets through.
		opts := fast
		opts.HealthTLS = &tls.Config{RootCAs: k.pool}
		l, _ := startLB(t, k, opts, a.addr())
		waitUnhealthy(t, l, a.addr())
		if got := mustWhoami(t, k, l); got != "a" {
			t.Errorf("request went to %s", got)
		}
	})
	t.Run("before the first probe answers", func(t *testing.T) {
		k := newPKI(t)
		a, b := newBackend(t, k, "a"), newBackend(t, k, "b")
		a.holdProbe.Store(true)
		b.holdProbe.Store(true)
		l, _ := startLB(t, k, once, a.addr(), b.addr())
		waitFor(t, "the first probes to arrive", func() bool { return a.probes.Load() > 0 && b.probes.Load() > 0 })
		seen := map[string]int{}
		for range 4 {
			seen[mustWhoami(t, k, l)]++
		}
		for _, st := range l.Status() {
			if st.Healthy || !st.Since.IsZero() {
				t.Errorf("%+v: want health unknown while the probe is held", st)
			}
		}
		if seen["a"] == 0 || seen["b"] == 0 {
			t.Errorf("requests went %v; want unknown endpoints used round robin too", seen)
		}
	})
	t.Run("no endpoint reachable", func(t *testing.T) {
		k := newPKI(t)
		a := newBackend(t, k, "a")
		l, _ := startLB(t, k, fast, a.addr())
		waitHealthy(t, l, a.addr())
		a.kill()
		if name, err := whoami(t, k, l); err == nil {
			t.Fatalf("request got through to %s with every backend dead", name)
		}
		st, _ := statusOf(l, a.addr())
		if st.Healthy {
			t.Errorf("dead backend still healthy: %+v", st)
		}
	})
}

func TestMidStreamBackendDeath(t *testing.T) {
	k := newPKI(t)
	a, b := newBackend(t, k, "a"), newBackend(t, k, "b")
	byName := map[string]*backend{"a": a, "b": b}
	l, _ := startLB(t, k, once, a.addr(), b.addr())
	waitHealthy(t, l, a.addr(), b.addr())

	s := openStream(t, k, l)
	s.waitAlive(t)
	victim := byName[s.backend]
	victim.kill()
	s.waitEnded(t, "its backend died")

	other := "a"
	if s.backend == "a" {
		other = "b"
	}
	for range 3 {
		if got := mustWhoami(t, k, l); got != other {
			t.Fatalf("request after %s died went to %s", s.backend, got)
		}
	}
	waitFor(t, "no connections left to the dead backend", func() bool {
		st, _ := statusOf(l, victim.addr())
		return st.Connections == 0
	})
}

// openStreams opens watches until both a and b serve one.
func openStreams(t *testing.T, k *testPKI, l *LB) map[string]*stream {
	t.Helper()
	out := map[string]*stream{}
	for len(out) < 2 {
		s := openStream(t, k, l)
		if out[s.backend] == nil {
			out[s.backend] = s
		}
		if len(out) < 2 && len(l.Status()) < 2 {
			t.Fatal("fewer than two endpoints")
		}
	}
	return out
}

func TestUnhealthyClosesConnections(t *testing.T) {
	k := newPKI(t)
	a, b := newBackend(t, k, "a"), newBackend(t, k, "b")
	l, _ := startLB(t, k, fast, a.addr(), b.addr())
	waitHealthy(t, l, a.addr(), b.addr())
	streams := openStreams(t, k, l)
	if st, _ := statusOf(l, a.addr()); st.Connections == 0 {
		t.Errorf("a serves a watch but shows %+v", st)
	}

	// a starts shutting down: /readyz fails, its connections still work.
	a.ready.Store(http.StatusInternalServerError)
	streams["a"].waitEnded(t, "a turned unhealthy")
	streams["b"].waitAlive(t)
	waitFor(t, "a's connections closed", func() bool { st, _ := statusOf(l, a.addr()); return st.Connections == 0 })
	if got := mustWhoami(t, k, l); got != "b" {
		t.Errorf("reconnect went to %s", got)
	}
}

func TestSetEndpoints(t *testing.T) {
	k := newPKI(t)
	a, b := newBackend(t, k, "a"), newBackend(t, k, "b")
	l, _ := startLB(t, k, once, a.addr(), b.addr())
	waitHealthy(t, l, a.addr(), b.addr())
	bBefore, _ := statusOf(l, b.addr())
	streams := openStreams(t, k, l)

	// a leaves the cluster: its watch ends, b's is untouched and b
	// keeps its health (no new probe happens with once's interval).
	l.SetEndpoints([]string{b.addr(), "no-port", b.addr()})
	streams["a"].waitEnded(t, "a was removed")
	streams["b"].waitAlive(t)
	got := l.Status()
	if len(got) != 1 || got[0].Address != b.addr() || !got[0].Healthy || !got[0].Since.Equal(bBefore.Since) || got[0].Connections != 1 {
		t.Errorf("after removing a: %+v; want only b, healthy since %s, with its watch", got, bBefore.Since)
	}
	for range 3 {
		if got := mustWhoami(t, k, l); got != "b" {
			t.Fatalf("request went to removed %s", got)
		}
	}

	// a comes back: probed at once, not one (hour-long) interval later.
	probes := a.probes.Load()
	l.SetEndpoints([]string{a.addr(), b.addr()})
	waitHealthy(t, l, a.addr())
	if a.probes.Load() == probes {
		t.Error("a turned healthy without a probe")
	}
}

func TestHealthTransitionsLoggedOnce(t *testing.T) {
	k := newPKI(t)
	a := newBackend(t, k, "a")
	rec := &recorder{}
	opts := fast
	opts.Log = slog.New(rec)
	l, _ := startLB(t, k, opts, a.addr())
	waitHealthy(t, l, a.addr())
	n := a.probes.Load()
	waitFor(t, "more probes", func() bool { return a.probes.Load() >= n+5 })
	if c := rec.count("API server endpoint healthy", a.addr()); c != 1 {
		t.Errorf("healthy logged %d times; want once", c)
	}

	a.ready.Store(http.StatusInternalServerError)
	waitUnhealthy(t, l, a.addr())
	n = a.probes.Load()
	waitFor(t, "more probes", func() bool { return a.probes.Load() >= n+5 })
	if c := rec.count("API server endpoint unhealthy; closing its connections", a.addr()); c != 1 {
		t.Errorf("unhealthy logged %d times; want once", c)
	}
}

func TestRunStopClosesEverything(t *testing.T) {
	k := newPKI(t)
	a := newBackend(t, k, "a")
	l, stop := startLB(t, k, fast, a.addr())
	waitHealthy(t, l, a.addr())
	s := openStream(t, k, l)
	s.waitAlive(t)

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	s.waitEnded(t, "Run's context ended")
	if st, _ := statusOf(l, a.addr()); st.Connections != 0 {
		t.Errorf("after Run returned: %+v", st)
	}
	ln, err := net.Listen("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("port still taken after Run returned: %v", err)
	}
	ln.Close()
	// Run waited for its goroutines; allow the last ones to unwind.
	for deadline := time.Now().Add(waitTimeout); ; time.Sleep(5 * time.Millisecond) {
		left := lbGoroutines()
		if left == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after Run returned:\n%s", left)
		}
	}
	if err := l.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestCloseWithoutRun(t *testing.T) {
	k := newPKI(t)
	l, err := New(Options{Listen: "127.0.0.1:0", HealthTLS: k.healthTLS()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("port still taken after Close: %v", err)
	}
	ln.Close()
}

func TestCloseStopsRun(t *testing.T) {
	k := newPKI(t)
	l, err := New(Options{Listen: "127.0.0.1:0", HealthTLS: k.healthTLS()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run(context.Background()) }()
	// Close may come before or after Run started: either way Run ends.
	l.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after Close: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after Close")
	}
}

func TestListenAddressInUse(t *testing.T) {
	k := newPKI(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = New(Options{Listen: taken.Addr().String(), HealthTLS: k.healthTLS()})
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("New on a taken address: %v; want an error naming it and saying it is in use", err)
	}
	if _, err := New(Options{Listen: "127.0.0.1:0"}); err == nil {
		t.Error("New without HealthTLS succeeded")
	}
}

func TestHalfClose(t *testing.T) {
	// A raw TCP backend that reads everything, then answers and closes:
	// the client's half-close must reach it, and its answer the client.
	k := newPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(waitTimeout))
				got, _ := io.ReadAll(c)
				fmt.Fprintf(c, "got %q", got)
			}()
		}
	}()
	l, _ := startLB(t, k, once, ln.Addr().String())
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	io.WriteString(c, "hello")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != `got "hello"` {
		t.Errorf("half-closed exchange: %q, %v", got, err)
	}
}

// lbGoroutines returns the stacks of the goroutines running the
// balancer's code (not the tests').
func lbGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "apilb.(*LB)") && !strings.Contains(g, "lbGoroutines") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// TestSlowProbesTolerated: probes that time out leave a healthy endpoint
// healthy, and its connections open, until FailureThreshold of them fail
// in a row; an answer other than 200 counts at once.
func TestSlowProbesTolerated(t *testing.T) {
	k := newPKI(t)
	b := newBackend(t, k, "a")
	l, _ := startLB(t, k, Options{Interval: 20 * time.Millisecond, Timeout: 50 * time.Millisecond, FailureThreshold: 1000}, b.addr())
	waitHealthy(t, l, b.addr())
	s := openStream(t, k, l)

	b.holdProbe.Store(true)
	start := b.probes.Load()
	waitFor(t, "five probes to time out", func() bool {
		st, _ := statusOf(l, b.addr())
		return b.probes.Load() >= start+6 && strings.Contains(st.LastError, "deadline exceeded")
	})
	if st, _ := statusOf(l, b.addr()); !st.Healthy {
		t.Fatalf("unhealthy after timeouts below the threshold: %+v", st)
	}
	s.waitAlive(t)

	// The server answers, not ready: that counts at once.
	b.ready.Store(http.StatusInternalServerError)
	b.holdProbe.Store(false)
	waitUnhealthy(t, l, b.addr())
	s.waitEnded(t, "the endpoint said it is not ready")
}
