package units

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestJobResults(t *testing.T) {
	for _, tc := range []struct {
		result      string
		wantJournal bool
	}{
		{"done", false},
		{"failed", true},
		{"timeout", true},
		{"dependency", true},
		{"canceled", false},
		{"skipped", false},
	} {
		t.Run(tc.result, func(t *testing.T) {
			f, m := newFake(t)
			runner := m.opts.Runner.(*fakeRunner)
			runner.out = "-- Journal begins at Mon 2026-01-05 --\n2026-01-05T10:00:00+0000 host sh[42]: boom\n"
			f.jobResults["start x.service"] = tc.result
			err := m.Start(context.Background(), "x.service")
			if tc.result == "done" {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				return
			}
			var jerr *JobError
			if !errors.As(err, &jerr) {
				t.Fatalf("Start: %v (%T), want a *JobError", err, err)
			}
			if jerr.Unit != "x.service" || jerr.Op != "start" || string(jerr.Result) != tc.result {
				t.Errorf("JobError = %+v", jerr)
			}
			if !strings.Contains(err.Error(), "start x.service") {
				t.Errorf("error %q does not name the op and unit", err)
			}
			if tc.wantJournal {
				want := []string{"2026-01-05T10:00:00+0000 host sh[42]: boom"}
				if diff := cmp.Diff(want, jerr.Journal); diff != "" {
					t.Errorf("journal (-want +got):\n%s", diff)
				}
				if len(runner.calls) != 2 || runner.calls[0][1] != "--sync" {
					t.Errorf("runner calls %q, want journalctl --sync then the query", runner.calls)
				}
			} else if jerr.Journal != nil || len(runner.calls) != 0 {
				t.Errorf("journal read for result %s: %q", tc.result, runner.calls)
			}
		})
	}
}

func TestJobOps(t *testing.T) {
	f, m := newFake(t)
	ctx := context.Background()
	for _, op := range []func(context.Context, string) error{m.Start, m.Restart, m.Stop} {
		if err := op(ctx, "x.service"); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"start x.service", "restart x.service", "stop x.service"}, f.takeCalls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if err := m.Start(ctx, "bad name.service"); err == nil {
		t.Error("Start accepted an invalid unit name")
	}
}

func TestJobDeadline(t *testing.T) {
	f, m := newFake(t)
	f.jobResults["restart slow.service"] = "" // never answers
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := m.Restart(ctx, "slow.service")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Restart: %v, want a deadline error", err)
	}
	if !strings.Contains(err.Error(), "restart slow.service") {
		t.Errorf("error %q does not name the op and unit", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("Restart took %s", time.Since(start))
	}

	// The Manager's own JobTimeout bounds a caller without a deadline.
	m.opts.JobTimeout = 30 * time.Millisecond
	if err := m.Restart(context.Background(), "slow.service"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Restart: %v, want a deadline error", err)
	}
}

func TestRestartIfChanged(t *testing.T) {
	f, m := newFake(t)
	ctx := context.Background()
	if _, err := m.Apply(ctx, testSpecs()); err != nil { // enables a and b
		t.Fatal(err)
	}
	f.set("a.service", "ActiveState", "active", "SubState", "running")
	f.set("b.service", "UnitFileState", "disabled")                           // stopped, disabled
	f.set("static.service", "ActiveState", "activating", "SubState", "start") // running, not enabled
	f.set("c.service", "ActiveState", "active")                               // running, not changed
	f.takeCalls()

	ch := Changes{Written: []string{"a.service", "b.service"}, Stale: []string{"static.service"}}
	restarted, err := m.RestartIfChanged(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.service", "static.service"}
	if diff := cmp.Diff(want, restarted); diff != "" {
		t.Errorf("restarted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"restart a.service", "restart static.service"}, f.takeCalls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}

	// A failed restart does not stop the others.
	f.jobResults["restart a.service"] = "failed"
	restarted, err = m.RestartIfChanged(ctx, ch)
	var jerr *JobError
	if !errors.As(err, &jerr) || jerr.Unit != "a.service" {
		t.Errorf("RestartIfChanged error %v, want a JobError for a.service", err)
	}
	if diff := cmp.Diff([]string{"static.service"}, restarted); diff != "" {
		t.Errorf("restarted (-want +got):\n%s", diff)
	}
}
