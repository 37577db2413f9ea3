package seed

import (
	"context"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// fakeLock records the calls that reach the real lock.
type fakeLock struct {
	resourcelock.Interface
	mu    sync.Mutex
	calls []string
}

func (f *fakeLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "create "+r.HolderIdentity)
	return nil
}

func (f *fakeLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "update "+r.HolderIdentity)
	return nil
}

func (f *fakeLock) log(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

// TestGate: the guard holds only within the renew deadline of our last
// renewal, and releasing the lease first stops the pass.
func TestGate(t *testing.T) {
	fake := &fakeLock{}
	g := &gate{Interface: fake, identity: "cp-1", renewDeadline: 300 * time.Millisecond}
	if g.check() == nil {
		t.Fatal("guard holds before the lease is acquired")
	}
	rec := func(holder string) resourcelock.LeaderElectionRecord {
		return resourcelock.LeaderElectionRecord{HolderIdentity: holder, RenewTime: metav1.Now()}
	}
	if err := g.Create(t.Context(), rec("cp-1")); err != nil {
		t.Fatal(err)
	}
	if err := g.check(); err != nil {
		t.Fatalf("guard after acquiring: %v", err)
	}
	time.Sleep(350 * time.Millisecond)
	if g.check() == nil {
		t.Fatal("guard holds past the renew deadline")
	}
	if err := g.Update(t.Context(), rec("cp-1")); err != nil {
		t.Fatal(err)
	}
	if err := g.check(); err != nil {
		t.Fatalf("guard after renewing: %v", err)
	}

	// A pass in progress: releasing cancels it and waits for its end
	// before the release reaches the lock.
	started := make(chan struct{})
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		g.work(t.Context(), func(ctx context.Context) {
			close(started)
			<-ctx.Done()
			time.Sleep(50 * time.Millisecond) // finishing a request
			fake.log("worker stopped")
		})
	}()
	<-started
	if err := g.Update(t.Context(), rec("")); err != nil {
		t.Fatal(err)
	}
	<-workerDone
	fake.mu.Lock()
	calls := append([]string(nil), fake.calls...)
	fake.mu.Unlock()
	want := []string{"create cp-1", "update cp-1", "worker stopped", "update "}
	if len(calls) != len(want) {
		t.Fatalf("calls %q, want %q", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("calls %q, want %q", calls, want)
		}
	}
	if g.check() == nil {
		t.Fatal("guard holds after the release")
	}

	// A worker that starts after the release does nothing.
	ran := false
	g.work(t.Context(), func(context.Context) { ran = true })
	if ran {
		t.Fatal("a worker ran without the lease")
	}
}
