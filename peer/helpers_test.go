package peer

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testSecret = "k3y-0f-the-test-cluster-0123456789abcdef"

// testOptions returns options for a node of the "prod" test cluster.
func testOptions(name string) Options {
	return Options{Secret: []byte(testSecret), ClusterName: "prod", NodeID: "id-" + name, NodeName: name}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type promiseReq struct {
	Seed string `json:"seed"`
	Term int    `json:"term"`
}

type promiseResp struct {
	Granted bool   `json:"granted"`
	By      string `json:"by"`
	To      string `json:"to"`
}

// testNode is a running Server with a "promise" handler that grants
// promises for terms >= 0 and refuses others, and counts its calls.
type testNode struct {
	*Server
	t     *testing.T
	addr  string
	logs  *syncBuffer
	calls atomic.Int64
	last  atomic.Pointer[Request]
	stop  func() error
}

// startNode starts a server on loopback; the test's cleanup stops it.
func startNode(t *testing.T, opts Options, more ...func(*testNode)) *testNode {
	t.Helper()
	n := &testNode{t: t, logs: &syncBuffer{}}
	opts.Log = slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	n.Server = srv
	srv.Handle("promise", func(ctx context.Context, req Request) (any, error) {
		n.calls.Add(1)
		n.last.Store(&req)
		var p promiseReq
		if err := req.Decode(&p); err != nil {
			return nil, err
		}
		if p.Term < 0 {
			return nil, Errorf(CodeRefused, "already promised to node-c until 12:00:00")
		}
		return promiseResp{Granted: true, By: opts.NodeName, To: p.Seed}, nil
	})
	for _, f := range more {
		f(n)
	}
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	n.stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10s of its context ending")
			return nil
		}
	})
	t.Cleanup(func() {
		if err := n.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return n
}

// newClient returns a client; the test's cleanup closes it.
func newClient(t *testing.T, opts Options) *Client {
	t.Helper()
	c, err := NewClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// post sends raw bytes to a method's endpoint, as an attacker on the
// network could.
func post(t *testing.T, addr, method string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/v1/peer/"+method, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", method, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// wire records the bodies of a client's last request and response.
type wire struct {
	base       http.RoundTripper
	mu         sync.Mutex
	req, reply []byte
}

func (w *wire) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := w.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	reply, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(reply))
	w.mu.Lock()
	w.req, w.reply = body, reply
	w.mu.Unlock()
	return resp, err
}

// tap makes c record its traffic.
func tap(c *Client) *wire {
	w := &wire{base: c.http.Transport}
	c.http.Transport = w
	return w
}

// wantLog fails the test unless the server's log contains all of parts on
// one line.
func wantLog(t *testing.T, n *testNode, parts ...string) {
	t.Helper()
	for line := range strings.SplitSeq(n.logs.String(), "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return
		}
	}
	t.Errorf("server log has no line with %q; log:\n%s", parts, n.logs)
}
