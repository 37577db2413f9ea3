package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCallRoundTrip(t *testing.T) {
	n := startNode(t, testOptions("node-b"))
	c := newClient(t, testOptions("node-a"))

	var got promiseResp
	if err := c.Call(context.Background(), n.addr, "promise", promiseReq{Seed: "node-a", Term: 3}, &got); err != nil {
		t.Fatal(err)
	}
	if want := (promiseResp{Granted: true, By: "node-b", To: "node-a"}); got != want {
		t.Errorf("response = %+v, want %+v", got, want)
	}
	req := n.last.Load()
	if req.NodeID != "id-node-a" || req.NodeName != "node-a" || req.Method != "promise" {
		t.Errorf("handler saw sender %q (%q) for %q; want id-node-a (node-a) for promise", req.NodeID, req.NodeName, req.Method)
	}
	if host, _, _ := net.SplitHostPort(req.RemoteAddr); host != "127.0.0.1" {
		t.Errorf("RemoteAddr = %q, want 127.0.0.1:port", req.RemoteAddr)
	}
	if d := time.Since(req.Sent); d < 0 || d > 10*time.Second {
		t.Errorf("Sent = %v, %v ago", req.Sent, d)
	}
	// A nil response is fine, and CallNode with the right ID works.
	if err := c.CallNode(context.Background(), n.addr, "id-node-b", "promise", promiseReq{}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestCallRemoteErrors(t *testing.T) {
	n := startNode(t, testOptions("node-b"))
	c := newClient(t, testOptions("node-a"))
	ctx := context.Background()

	for _, tc := range []struct {
		name, method string
		call         func(method string) error
		code, msg    string
	}{
		{"refused", "promise", func(m string) error { return c.Call(ctx, n.addr, m, promiseReq{Term: -1}, nil) },
			CodeRefused, "answered promise: refused: already promised to node-c"},
		{"undecodable", "promise", func(m string) error { return c.Call(ctx, n.addr, m, "not an object", nil) },
			CodeBadRequest, "decode promise request"},
		{"unknown method", "commit", func(m string) error { return c.Call(ctx, n.addr, m, nil, nil) },
			CodeUnknownMethod, `node-b has no handler for "commit"`},
		{"wrong node", "promise", func(m string) error { return c.CallNode(ctx, n.addr, "id-node-x", m, nil, nil) },
			CodeWrongNode, "request for node id-node-x reached node-b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(tc.method)
			var re *RemoteError
			if !errors.As(err, &re) || re.Code != tc.code {
				t.Fatalf("error = %v; want a *RemoteError with code %s", err, tc.code)
			}
			prefix := fmt.Sprintf("peer %s (node-b) answered %s: ", n.addr, tc.method)
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error = %q; want it to start with %q and contain %q", err, prefix, tc.msg)
			}
			if errors.Is(err, ErrUnauthorized) {
				t.Error("a handler's error matches ErrUnauthorized")
			}
		})
	}
	if got := n.calls.Load(); got != 2 {
		t.Errorf("the promise handler ran %d times, want 2 (wrong-node requests must not reach it)", got)
	}
}

func TestCallWithOtherSecretOrClusterIsUnauthorized(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Options)
	}{
		{"other secret", func(o *Options) { o.Secret = []byte(testSecret + "-other") }},
		{"other cluster name", func(o *Options) { o.ClusterName = "staging" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, testOptions("node-b"))
			opts := testOptions("node-a")
			tc.change(&opts)
			c := newClient(t, opts)

			err := c.Call(context.Background(), n.addr, "promise", promiseReq{Seed: "node-a"}, nil)
			if !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrClockSkew) {
				t.Fatalf("error = %v; want ErrUnauthorized and not ErrClockSkew", err)
			}
			want := fmt.Sprintf("peer %s rejected our promise request: the cluster secret or cluster name differ", n.addr)
			if err.Error() != want {
				t.Errorf("error = %q\nwant    %q", err, want)
			}
			if got := n.calls.Load(); got != 0 {
				t.Errorf("the handler ran %d times for an unauthenticated request", got)
			}
			wantLog(t, n, "rejected peer request", "method=promise", "remote=127.0.0.1:", "cannot decrypt")
		})
	}
}

func TestSecretsAreNotLogged(t *testing.T) {
	n := startNode(t, testOptions("node-b"))
	c := newClient(t, testOptions("node-a"))
	c.Call(context.Background(), n.addr, "promise", promiseReq{}, nil)
	post(t, n.addr, "promise", []byte("garbage"))
	key := DeriveKey([]byte(testSecret), PurposePeerRPC, "prod")
	logs := n.logs.String()
	if !strings.Contains(logs, "rejected peer request") {
		t.Fatalf("the rejection was not logged:\n%s", logs)
	}
	for _, s := range []string{testSecret, string(key[:]), fmt.Sprintf("%x", key), fmt.Sprint(key[:])} {
		if strings.Contains(logs, s) {
			t.Errorf("the log contains the secret or the key:\n%s", logs)
		}
	}
}

func TestReplaysAreRejected(t *testing.T) {
	n := startNode(t, testOptions("node-b"), func(n *testNode) {
		n.Handle("commit", func(context.Context, Request) (any, error) {
			t.Error("the commit handler ran for a request made for promise")
			return nil, nil
		})
	})
	c := newClient(t, testOptions("node-a"))
	w := tap(c)
	if err := c.Call(context.Background(), n.addr, "promise", promiseReq{Seed: "node-a"}, nil); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, method string
		body         []byte
		log          string
	}{
		{"same request again", "promise", w.req, "replay of request"},
		{"response as a request", "promise", w.reply, "cannot decrypt"},
		{"request to another method", "commit", w.req, "cannot decrypt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, n.addr, tc.method, tc.body)
			if status != 403 || body != forbiddenBody {
				t.Errorf("answer = %d %q; want 403 %q", status, body, forbiddenBody)
			}
			wantLog(t, n, "rejected peer request", "method="+tc.method, tc.log)
		})
	}
	if got := n.calls.Load(); got != 1 {
		t.Errorf("the promise handler ran %d times, want once", got)
	}
}

func TestClockSkew(t *testing.T) {
	const skew = 3*time.Minute + 12*time.Second
	for _, tc := range []struct {
		name       string
		clientSkew time.Duration
		serverLog  string
		clientErr  string
	}{
		{"client ahead", skew, "clock skew of 3m12s with 127.0.0.1 (node-a), whose clock is ahead; check NTP",
			"behind ours (more than the 2m0s allowed); check NTP on both nodes"},
		{"client behind", -skew, "clock skew of 3m12s with 127.0.0.1 (node-a), whose clock is behind; check NTP",
			"ahead of ours (more than the 2m0s allowed); check NTP on both nodes"},
		{"within the window", time.Minute, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, testOptions("node-b"))
			opts := testOptions("node-a")
			opts.Now = func() time.Time { return time.Now().Add(tc.clientSkew) }
			c := newClient(t, opts)

			err := c.Call(context.Background(), n.addr, "promise", promiseReq{}, nil)
			if tc.clientErr == "" {
				if err != nil {
					t.Fatalf("a call within the skew window failed: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrClockSkew) || !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("error = %v; want ErrClockSkew and ErrUnauthorized", err)
			}
			prefix := fmt.Sprintf("peer %s rejected our promise request: its clock is 3m1", n.addr)
			if !strings.HasPrefix(err.Error(), prefix) || !strings.HasSuffix(err.Error(), tc.clientErr) {
				t.Errorf("error = %q\nwant    %q...%q", err, prefix, tc.clientErr)
			}
			wantLog(t, n, "rejected peer request", tc.serverLog)
			if got := n.calls.Load(); got != 0 {
				t.Errorf("the handler ran %d times for a stale request", got)
			}
		})
	}
}

// A request captured before an agent restarted is refused after it,
// though the new server's replay cache never saw it: it is stamped before
// the server started.
func TestReplayAfterRestartIsRejected(t *testing.T) {
	before := startNode(t, testOptions("node-b"))
	c := newClient(t, testOptions("node-a"))
	w := tap(c)
	if err := c.Call(context.Background(), before.addr, "promise", promiseReq{Seed: "node-a"}, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // the restart comes strictly after the capture
	after := startNode(t, testOptions("node-b"))
	status, body := post(t, after.addr, "promise", w.req)
	if status != 403 || body != forbiddenBody {
		t.Errorf("answer = %d %q; want 403 %q", status, body, forbiddenBody)
	}
	wantLog(t, after, "rejected peer request", "before this agent started")
	if after.calls.Load() != 0 {
		t.Error("the restarted node's handler ran for a replayed request")
	}
	// Fresh calls are answered.
	if err := c.Call(context.Background(), after.addr, "promise", promiseReq{Seed: "node-a"}, nil); err != nil {
		t.Errorf("a fresh call after the restart: %v", err)
	}
}
