package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestOversizedMessagesAreRejected(t *testing.T) {
	n := startNode(t, testOptions("node-b"), func(n *testNode) {
		n.Handle("big", func(context.Context, Request) (any, error) {
			return strings.Repeat("x", DefaultMaxMessageBytes), nil
		})
	})

	t.Run("request on the wire", func(t *testing.T) {
		status, _ := post(t, n.addr, "promise", bytes.Repeat([]byte{1}, DefaultMaxMessageBytes+1))
		if status != http.StatusRequestEntityTooLarge {
			t.Errorf("status = %d, want 413", status)
		}
		wantLog(t, n, "rejected peer request", fmt.Sprintf("body over the limit of %d bytes", DefaultMaxMessageBytes))
	})
	t.Run("request from a client", func(t *testing.T) {
		c := newClient(t, testOptions("node-a"))
		err := c.Call(context.Background(), n.addr, "promise", strings.Repeat("x", DefaultMaxMessageBytes), nil)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("exceeds the limit of %d", DefaultMaxMessageBytes)) {
			t.Errorf("error = %v; want the request to exceed the limit", err)
		}
	})
	t.Run("response", func(t *testing.T) {
		c := newClient(t, testOptions("node-a"))
		err := c.Call(context.Background(), n.addr, "big", nil, nil)
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != CodeInternal || !strings.Contains(re.Message, "exceeds the limit") {
			t.Errorf("error = %v; want an internal RemoteError about the limit", err)
		}
	})
	if got := n.calls.Load(); got != 0 {
		t.Errorf("the handler ran %d times for oversized requests", got)
	}
}

func TestNonPeerRequestsGetPlainErrors(t *testing.T) {
	n := startNode(t, testOptions("node-b"))
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/v1/peer/promise", http.StatusMethodNotAllowed},
		{http.MethodPost, "/v1/peer/Promise", http.StatusNotFound},
		{http.MethodPost, "/v2/peer/promise", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+n.addr+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
}

func TestServeStopsWhenContextEnds(t *testing.T) {
	entered := make(chan struct{})
	n := startNode(t, testOptions("node-b"), func(n *testNode) {
		n.Handle("wait", func(ctx context.Context, _ Request) (any, error) {
			close(entered)
			<-ctx.Done()
			return nil, Errorf(CodeUnavailable, "shutting down")
		})
	})
	c := newClient(t, testOptions("node-a"))

	inFlight := make(chan error, 1)
	go func() { inFlight <- c.Call(context.Background(), n.addr, "wait", nil, nil) }()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not start")
	}
	start := time.Now()
	if err := n.stop(); err != nil {
		t.Fatalf("Serve = %v, want nil after its context ended", err)
	}
	if d := time.Since(start); d > shutdownGrace {
		t.Errorf("Serve took %v to stop; the handler's context was not cancelled", d)
	}
	var re *RemoteError
	if err := <-inFlight; !errors.As(err, &re) || re.Code != CodeUnavailable {
		t.Errorf("in-flight call = %v; want the handler's unavailable error", err)
	}

	err := c.Call(context.Background(), n.addr, "promise", nil, nil)
	if err == nil || errors.As(err, &re) || errors.Is(err, ErrUnauthorized) {
		t.Fatalf("call after stop = %v; want a transport error", err)
	}
	if want := "call promise on peer " + n.addr + ": "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q, want prefix %q", err, want)
	}
}

func TestCallTimesOut(t *testing.T) {
	n := startNode(t, testOptions("node-b"), func(n *testNode) {
		n.Handle("slow", func(ctx context.Context, _ Request) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
	})
	opts := testOptions("node-a")
	opts.CallTimeout = 100 * time.Millisecond
	c := newClient(t, opts)
	err := c.Call(context.Background(), n.addr, "slow", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "call slow on peer "+n.addr+": no answer in time") {
		t.Errorf("error = %v; want a timeout naming the peer and method", err)
	}
}

func TestConcurrentCalls(t *testing.T) {
	nodes := []*testNode{startNode(t, testOptions("node-b")), startNode(t, testOptions("node-c"))}
	const callers, calls = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, callers*calls)
	for i := range callers {
		c := newClient(t, testOptions(fmt.Sprintf("node-a%d", i)))
		for j := range calls {
			wg.Go(func() {
				n := nodes[j%len(nodes)]
				seed := fmt.Sprintf("seed-%d-%d", i, j)
				var got promiseResp
				if err := c.Call(context.Background(), n.addr, "promise", promiseReq{Seed: seed}, &got); err != nil {
					errs <- err
				} else if got.To != seed || !got.Granted {
					errs <- fmt.Errorf("call %s got %+v", seed, got)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := nodes[0].calls.Load() + nodes[1].calls.Load(); got != callers*calls {
		t.Errorf("handlers ran %d times, want %d", got, callers*calls)
	}
}

func TestOptionsAreChecked(t *testing.T) {
	_, err := NewServer(Options{Secret: []byte("short")})
	for _, want := range []string{"secret is 5 bytes long", "cluster name is empty", "node ID is empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewServer(bad options) = %v; want it to say %q", err, want)
		}
	}
	if _, err := NewClient(Options{}); err == nil {
		t.Error("NewClient(Options{}) succeeded")
	}
	c := newClient(t, testOptions("node-a"))
	for _, tc := range []struct{ addr, method, want string }{
		{"127.0.0.1", "promise", "not host:port"},
		{"127.0.0.1:1", "Promise", "invalid method name"},
	} {
		if err := c.Call(context.Background(), tc.addr, tc.method, nil, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Call(%q, %q) = %v; want %q", tc.addr, tc.method, err, tc.want)
		}
	}
}

// Peers that connect and say nothing hold at most MaxConns connections
// being served; the others wait in the backlog, and an authenticated
// caller is served again once they go.
func TestConnectionsAreCapped(t *testing.T) {
	n := startNode(t, testOptions("node-b"))
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range MaxConns + 20 {
		c, err := net.DialTimeout("tcp", n.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	// While MaxConns idle connections are served, a caller waits.
	c := newClient(t, testOptions("node-a"))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err := c.Call(ctx, n.addr, "promise", promiseReq{Term: 1, Seed: "node-a"}, nil)
	cancel()
	if err == nil {
		t.Error("a call went through while every connection slot was held")
	}
	for _, c := range idle {
		c.Close()
	}
	idle = nil
	var last error
	for range 100 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = c.Call(ctx, n.addr, "promise", promiseReq{Term: 1, Seed: "node-a"}, nil)
		cancel()
		if last == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("no call went through once the idle connections were gone: %v", last)
}

// 200 unauthenticated connections, each sending a request body just
// under the limit and then stalling, hold at most MaxConns bodies in the
// server's memory: the rest wait in the listen backlog.
func TestUnauthenticatedConnectionsBoundMemory(t *testing.T) {
	n := startNode(t, testOptions("node-b"))
	const conns = 200
	body := bytes.Repeat([]byte{'x'}, DefaultMaxMessageBytes-1)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range conns {
		c, err := net.DialTimeout("tcp", n.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		// Writes to a connection waiting in the backlog fill the
		// kernel's buffers, not the server's heap; never block on them.
		go func() {
			fmt.Fprintf(c, "POST /v1/peer/promise HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", DefaultMaxMessageBytes)
			_, _ = c.Write(body)
		}()
	}
	// Let the server read what it accepts, then measure, at most 50 times.
	var peak uint64
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		var now runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&now)
		if now.HeapInuse > before.HeapInuse && now.HeapInuse-before.HeapInuse > peak {
			peak = now.HeapInuse - before.HeapInuse
		}
	}
	// Each served connection may hold its body in a buffer grown to
	// twice its size; the bound leaves room for the test's own body.
	limit := uint64(MaxConns*2*DefaultMaxMessageBytes + 8<<20)
	t.Logf("heap grew by at most %d KiB with %d connections (limit %d KiB)", peak>>10, conns, limit>>10)
	if peak > limit {
		t.Errorf("heap grew by %d KiB, more than %d KiB: connections are not capped", peak>>10, limit>>10)
	}
}
