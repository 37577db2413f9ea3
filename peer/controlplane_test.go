package peer

import (
	"context"
	"errors"
	"strings"
	"testing"
)

const testControlPlaneKey = "c0ntr0l-plane-k3y-of-the-test-0123456789"

// cpOptions are a node's options with "promise" a control-plane method;
// key is its control-plane key, nil for a worker.
func cpOptions(name string, key []byte) Options {
	o := testOptions(name)
	o.ControlPlaneSecret = key
	o.ControlPlaneMethods = []string{"promise"}
	return o
}

// TestControlPlaneMethods: a control-plane method answers only callers
// holding the same control-plane key; the cluster secret alone (a worker)
// is not enough, whatever the caller claims to be.
func TestControlPlaneMethods(t *testing.T) {
	n := startNode(t, cpOptions("cp-1", []byte(testControlPlaneKey)))

	var resp promiseResp
	if err := newClient(t, cpOptions("cp-2", []byte(testControlPlaneKey))).Call(context.Background(), n.addr, "promise", promiseReq{Seed: "cp-2"}, &resp); err != nil || !resp.Granted {
		t.Fatalf("a holder of the key: %v, %+v", err, resp)
	}

	// A worker's client cannot even seal the request.
	err := newClient(t, cpOptions("w-1", nil)).Call(context.Background(), n.addr, "promise", promiseReq{Seed: "w-1"}, nil)
	if err == nil || !strings.Contains(err.Error(), "holds no control-plane key") {
		t.Errorf("a worker's call: %v", err)
	}

	// A worker that seals with the cluster secret (a modified agent) is
	// refused, and so is another key.
	for name, opts := range map[string]Options{
		"cluster secret only": testOptions("w-1"),
		"another key":         cpOptions("cp-x", []byte(testControlPlaneKey+"-other")),
	} {
		err := newClient(t, opts).Call(context.Background(), n.addr, "promise", promiseReq{Seed: "cp-1"}, nil)
		if !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s: error = %v, want ErrUnauthorized", name, err)
		}
	}
	if got := n.calls.Load(); got != 1 {
		t.Errorf("the handler ran %d times, want once (for the key holder)", got)
	}
	wantLog(t, n, "rejected peer request", "method=promise", "control-plane key")
}

// TestControlPlaneMethodOnAWorker: a node without the key refuses a
// control-plane method even from a key holder, as it could not answer.
func TestControlPlaneMethodOnAWorker(t *testing.T) {
	n := startNode(t, cpOptions("w-1", nil))
	err := newClient(t, cpOptions("cp-1", []byte(testControlPlaneKey))).Call(context.Background(), n.addr, "promise", promiseReq{Seed: "cp-1"}, nil)
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("error = %v, want ErrUnauthorized", err)
	}
	if n.calls.Load() != 0 {
		t.Error("the handler ran")
	}
}
