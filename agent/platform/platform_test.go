package platform

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/status"
)

var t0 = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

func problems(n int) []status.PlatformProblem {
	var ps []status.PlatformProblem
	for i := range n {
		ps = append(ps, status.PlatformProblem{Object: "Deployment ecommerce/w" + string(rune('a'+i)), Reason: "ImagePullBackOff"})
	}
	return ps
}

// The platform's status over a day of reads: not available, still not
// past the grace, degraded past it, a failed read keeping what was known,
// and all available again.
func TestPlatformOverTime(t *testing.T) {
	now := t0
	var w Workloads
	var readErr error
	reads := 0
	p := New(Deps{
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return now },
		Read: func(context.Context) (Workloads, error) {
			reads++
			return w, readErr
		},
	})
	get := func() *status.PlatformStatus {
		t.Helper()
		if err := p.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
		var s status.Status
		p.Report(&s)
		if s.Platform == nil {
			t.Fatal("no platform section")
		}
		return s.Platform
	}

	w = Workloads{Total: 9, NotReady: problems(7)}
	s := get()
	if s.Workloads != 9 || s.Ready != 2 || len(s.NotReady) != shown || !s.NotReadySince.Equal(t0) || s.Overdue {
		t.Fatalf("first read: %+v", s)
	}
	// Within Interval: not read again.
	now = t0.Add(10 * time.Second)
	if get(); reads != 1 {
		t.Errorf("%d reads within the interval, want 1", reads)
	}
	now = t0.Add(status.PlatformGrace - time.Second)
	if s = get(); s.Overdue || !s.NotReadySince.Equal(t0) || reads != 2 {
		t.Errorf("within the grace: %+v (%d reads)", s, reads)
	}
	now = now.Add(Interval)
	if s = get(); !s.Overdue {
		t.Errorf("past the grace: %+v", s)
	}
	var st status.Status
	p.Report(&st)
	st.Judge(false)
	if st.Verdict != status.Degraded {
		t.Errorf("verdict %s %v, want degraded", st.Verdict, st.Reasons)
	}
	// A failed read keeps what was known, with the error.
	readErr = errors.New("the server is currently unable to handle the request")
	now = now.Add(Interval)
	if s = get(); !s.Overdue || s.Ready != 2 || s.Error == "" {
		t.Errorf("after a failed read: %+v", s)
	}
	// All available: no longer overdue, the time forgotten.
	readErr, w = nil, Workloads{Total: 9}
	now = now.Add(Interval)
	if s = get(); s.Overdue || s.Ready != 9 || !s.NotReadySince.IsZero() || len(s.NotReady) != 0 || s.Error != "" {
		t.Errorf("all available: %+v", s)
	}
	// Not available again: the grace starts over.
	w = Workloads{Total: 9, NotReady: problems(1)}
	now = now.Add(Interval)
	if s = get(); s.Overdue || !s.NotReadySince.Equal(now) {
		t.Errorf("not available again: %+v", s)
	}
}

// A first read that fails is an error and nothing else.
func TestPlatformFirstReadFails(t *testing.T) {
	p := New(Deps{
		Log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Read: func(context.Context) (Workloads, error) { return Workloads{}, errors.New("forbidden") },
	})
	if err := p.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	var s status.Status
	p.Report(&s)
	if s.Platform == nil || s.Platform.Error != "forbidden" || s.Platform.Overdue {
		t.Errorf("platform %+v", s.Platform)
	}
}

// The workloads the config leaves out are in every report, whatever the
// read found.
func TestPlatformNotSeeded(t *testing.T) {
	left := []status.PlatformProblem{{Object: "Deployment ecommerce/grafana", Reason: "not seeded: no image"}}
	p := New(Deps{
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Read:      func(context.Context) (Workloads, error) { return Workloads{Total: 9}, nil },
		NotSeeded: left,
	})
	if err := p.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	var s status.Status
	p.Report(&s)
	if s.Platform == nil || len(s.Platform.NotSeeded) != 1 || s.Platform.NotSeeded[0] != left[0] || s.Platform.Ready != 9 {
		t.Errorf("platform %+v", s.Platform)
	}
}
