package netpol

import (
	"testing"
	"time"

	"k8s.io/klog/v2"
)

// klog.Fatal in one of the engine's goroutines ends that goroutine, after
// its deferred calls, and leaves the process running; the count tells
// the engine it failed.
func TestFatalEndsTheGoroutineNotTheAgent(t *testing.T) {
	catchFatal()
	before := fatals.Load()
	e := &kubeRouter{fatals: before}
	deferred := make(chan struct{})
	go func() {
		defer close(deferred)
		klog.Fatalf("Failed to run iptables command to insert in %s chain %s", "FORWARD", "exit status 4: Another app is currently holding the xtables lock")
		t.Error("klog.Fatalf returned")
	}()
	select {
	case <-deferred:
	case <-time.After(10 * time.Second):
		t.Fatal("the goroutine did not end")
	}
	if !e.Failed() || fatals.Load() != before+1 {
		t.Fatalf("failed %v, fatals %d (was %d)", e.Failed(), fatals.Load(), before)
	}
}
