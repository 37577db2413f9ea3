package snapshots

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/integration/kubetest"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/snapshot"
	"github.com/ecom-platform/ecom-agent/status"
)

// clock is a test's time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// On the real etcd of a rendered control-plane node: a snapshot as soon
// as the member serves, the next an interval later, never while another
// node holds the lock, the newest kept by retention, and the status
// overdue once none is younger than twice the interval.
func TestScheduledSnapshots(t *testing.T) {
	c := kubetest.Start(t)
	cfg := c.Config
	cfg.Etcd.Snapshots = config.Snapshots{Interval: config.Duration{Duration: time.Hour}, Retention: 2, Dir: snapshot.DefaultDir}
	clk := &clock{t: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}
	store, err := nodestate.Open(c.Root, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := New(Deps{Config: cfg, Root: c.Root, Log: slog.New(slog.DiscardHandler), Now: clk.now, Store: store})
	report := func() *status.SnapshotStatus {
		var st status.Status
		s.Report(&st)
		return st.EtcdSnapshots
	}
	if err := s.Step(ctx); err != nil || report() != nil {
		t.Fatalf("before etcd serves: %v, %+v", err, report())
	}
	if _, err := store.SetPhase(nodestate.PhaseAPIReady); err != nil {
		t.Fatal(err)
	}
	dir := c.Root.Path(snapshot.DefaultDir)
	count := func() int {
		es, err := snapshot.List(dir)
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	step := func() {
		t.Helper()
		if err := s.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	step()
	st := report()
	if count() != 1 || st == nil || st.Last == nil || st.Last.Revision == 0 || st.Overdue || st.Error != "" || st.Count != 1 {
		t.Fatalf("the first snapshot: %d files, status %+v", count(), st)
	}
	if _, err := snapshot.Verify(dir + "/" + st.Last.Name); err != nil {
		t.Errorf("the scheduled snapshot does not verify: %v", err)
	}
	clk.add(30 * time.Minute)
	step()
	if count() != 1 {
		t.Errorf("a second snapshot within the interval")
	}

	// Another node holds the lock: none taken, and no error shown.
	session, err := concurrency.NewSession(c.Etcd)
	if err != nil {
		t.Fatal(err)
	}
	other := concurrency.NewMutex(session, LockKey)
	if err := other.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	clk.add(31 * time.Minute)
	step()
	if count() != 1 || report().Error != "" {
		t.Errorf("a snapshot under another node's lock: %d, %+v", count(), report())
	}
	clk.add(2 * time.Hour)
	step()
	if st := report(); !st.Overdue {
		t.Errorf("not overdue after 2h31m: %+v", st)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	session.Close()
	// The lock released: taken at the next check, not 5 minutes on.
	clk.add(pace)
	step()
	if count() != 2 {
		t.Errorf("no snapshot a check after the lock was released: %d", count())
	}

	for range 3 {
		clk.add(time.Hour)
		step()
	}
	if st := report(); count() != 2 || st.Overdue || st.Count != 2 || !st.Last.Taken.Equal(clk.now()) {
		t.Errorf("after three more hours: %d files, status %+v", count(), st)
	}
}
