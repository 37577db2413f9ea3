package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/agent/membership"
	"github.com/ecom-platform/ecom-agent/agent/workercreds"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/status/statustest"
	"github.com/ecom-platform/ecom-agent/units"
)

// fakeSystemd records what the daemon asks of systemd.
type fakeSystemd struct {
	mu      sync.Mutex
	applied []string
	started []string
}

func (f *fakeSystemd) Apply(_ context.Context, specs []units.Spec) (units.Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range specs {
		f.applied = append(f.applied, s.Name)
	}
	return units.Changes{}, nil
}
func (f *fakeSystemd) Start(_ context.Context, n string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, n)
	return nil
}
func (f *fakeSystemd) Restart(context.Context, string) error { return nil }
func (f *fakeSystemd) Stop(context.Context, string) error    { return nil }
func (f *fakeSystemd) Status(_ context.Context, n string) (units.UnitStatus, error) {
	return units.UnitStatus{Name: n, ActiveState: units.Inactive}, nil
}
func (f *fakeSystemd) Journal(context.Context, string, int) ([]string, error) { return nil, nil }

// runUntilReady runs a daemon until it sends READY=1, then stops it.
func runUntilReady(t *testing.T, cfg *config.Config) (*Daemon, *fakeSystemd, []string) {
	t.Helper()
	root := configtest.Root(t)
	sd := &fakeSystemd{}
	var (
		mu    sync.Mutex
		notes []string
	)
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := New(Deps{
		Config:  cfg,
		Root:    root,
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Systemd: func(context.Context) (Systemd, error) { return sd, nil },
		Notify: func(s string) error {
			mu.Lock()
			notes = append(notes, s)
			mu.Unlock()
			if s == "READY=1" {
				close(ready)
			}
			return nil
		},
	})
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon stopped before READY=1: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no READY=1 within 30s")
	}
	// READY=1 comes as soon as the agent serves; then it settles on
	// what it waits for, past its first phase (a worker's credentials
	// component waits from the start).
	for i := 0; i < 100; i++ {
		if st := d.Status(); len(st.Conditions) > 0 && st.Phase != nodestate.PhaseStarting {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return d, sd, notes
}

// A control-plane node of a three-node cluster waits for its peers and
// creates nothing, least of all a CA of its own.
func TestControlPlaneWaitsWithoutCreatingCAs(t *testing.T) {
	d, sd, notes := runUntilReady(t, configtest.ControlPlane(t))
	if ok, _ := d.deps.Root.Exists("/etc/kubernetes/pki/ca.key"); ok {
		t.Error("a node waiting for its peers created a CA")
	}
	if len(sd.applied) != 0 || len(sd.started) != 0 {
		t.Errorf("applied %v, started %v; want nothing", sd.applied, sd.started)
	}
	st := d.Status()
	if st.Phase != nodestate.PhaseWaiting || !hasCondition(st, membership.Name, status.ReasonWaitForNodes) || st.Verdict != status.Degraded {
		t.Errorf("status %+v", st)
	}
	// The daemon's own document validates against the schema.
	doc, _ := json.Marshal(st)
	if err := statustest.Validate(t, doc); err != nil {
		t.Errorf("the daemon's status does not validate: %v\n%s", err, doc)
	}
	if last := notes[len(notes)-1]; last != "STOPPING=1" {
		t.Errorf("last notification %q, want STOPPING=1", last)
	}
}

func TestWorkerWaitsForTheControlPlane(t *testing.T) {
	d, sd, _ := runUntilReady(t, configtest.Worker(t))
	if len(sd.applied) != 0 {
		t.Errorf("a worker applied %v", sd.applied)
	}
	if st := d.Status(); st.Phase != nodestate.PhaseWorkerWaiting || !hasCondition(st, workercreds.Name, status.ReasonWaitForCredentials) {
		t.Errorf("status %+v", st)
	}
}

// hasCondition reports whether a component reports reason.
func hasCondition(s status.Status, component string, reason status.Reason) bool {
	for _, c := range s.Conditions {
		if c.Component == component && c.Reason == reason {
			return true
		}
	}
	return false
}
