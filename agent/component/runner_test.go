package component

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/status"
)

// journal records what the fakes did, in order, across components.
type journal struct {
	mu    sync.Mutex
	lines []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lines = append(j.lines, s)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.lines)
}

// fake is a component whose readiness and step error the test sets.
type fake struct {
	name string
	j    *journal
	pace time.Duration

	mu        sync.Mutex
	ready     bool
	err       error
	steps     int
	withdrawn int
	wake      chan struct{}
}

func newFake(name string, j *journal) *fake {
	return &fake{name: name, j: j, pace: 20 * time.Millisecond}
}

func (f *fake) Name() string { return f.name }
func (f *fake) Step(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.steps++
	if f.steps == 1 {
		f.j.add("first step " + f.name)
	}
	return f.err
}
func (f *fake) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}
func (f *fake) Stop(context.Context) error {
	f.j.add("stop " + f.name)
	return nil
}
func (f *fake) Pace() time.Duration { return f.pace }

func (f *fake) set(ready bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready, f.err = ready, err
}

func (f *fake) stepped() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.steps
}

// withdrawing is a fake that can be withdrawn.
type withdrawing struct{ *fake }

func (w withdrawing) Withdraw(context.Context) {
	w.mu.Lock()
	w.withdrawn++
	w.mu.Unlock()
	w.j.add("withdraw " + w.name)
}

// waking is a fake with a Waker channel and a pace too long to matter.
type waking struct{ *fake }

func (w waking) Wakeups() <-chan struct{} { return w.wake }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// await polls cond for at most 10 seconds.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func run(t *testing.T, r *Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
}

// A component is stepped only once what it needs, directly or not, is
// Ready; everything is stopped in reverse order when Run ends.
func TestRunnerStartsInOrderAndStopsInReverse(t *testing.T) {
	j := &journal{}
	a, b, c := newFake("a", j), newFake("b", j), newFake("c", j)
	r := NewRunner(discard(), Entry{Component: a}, Entry{Component: b, Needs: a}, Entry{Component: c, Needs: b})
	stop := run(t, r)
	await(t, "a stepped", func() bool { return a.stepped() > 2 })
	if b.stepped() != 0 || c.stepped() != 0 {
		t.Fatalf("b or c stepped before a was ready: %q", j.get())
	}
	// c's direct need (b) being Ready does not open c while a, which b
	// needs, is not.
	b.set(true, nil)
	time.Sleep(100 * time.Millisecond)
	if b.stepped() != 0 || c.stepped() != 0 {
		t.Fatalf("b or c stepped while a is not ready: %q", j.get())
	}
	b.set(false, nil)
	a.set(true, nil)
	await(t, "b stepped", func() bool { return b.stepped() > 0 })
	time.Sleep(100 * time.Millisecond)
	if c.stepped() != 0 {
		t.Fatalf("c stepped before b was ready: %q", j.get())
	}
	b.set(true, nil)
	await(t, "c stepped", func() bool { return c.stepped() > 0 })
	stop()
	got := j.get()
	want := []string{"first step a", "first step b", "first step c", "stop c", "stop b", "stop a"}
	if !slices.Equal(got, want) {
		t.Errorf("journal %q, want %q", got, want)
	}
}

// A component that started is withdrawn once when what it needs is no
// longer Ready; one that never started is not.
func TestRunnerWithdraws(t *testing.T) {
	j := &journal{}
	a := newFake("a", j)
	b := withdrawing{newFake("b", j)}
	c := withdrawing{newFake("c", j)} // needs b, which never becomes Ready
	r := NewRunner(discard(), Entry{Component: a}, Entry{Component: b, Needs: a}, Entry{Component: c, Needs: b})
	a.set(true, nil)
	stop := run(t, r)
	await(t, "b stepped", func() bool { return b.stepped() > 0 })
	a.set(false, nil)
	await(t, "b withdrawn", func() bool { return slices.Contains(j.get(), "withdraw b") })
	time.Sleep(100 * time.Millisecond)
	stop()
	b.mu.Lock()
	n := b.withdrawn
	b.mu.Unlock()
	if n != 1 {
		t.Errorf("b withdrawn %d times, want once", n)
	}
	if slices.Contains(j.get(), "withdraw c") {
		t.Error("c, which never started, was withdrawn")
	}
}

// A step error is the component's until a step succeeds.
func TestRunnerErr(t *testing.T) {
	j := &journal{}
	a := newFake("a", j)
	a.set(false, errors.New("disk full"))
	r := NewRunner(discard(), Entry{Component: a})
	stop := run(t, r)
	defer stop()
	await(t, "the error", func() bool { return r.Err(a) == "disk full" })
	a.set(true, nil)
	await(t, "the error cleared", func() bool { return r.Err(a) == "" })
}

// Wake and a Waker's channel step a component before its pace is up.
func TestRunnerWakes(t *testing.T) {
	j := &journal{}
	a := newFake("a", j)
	a.pace = time.Hour
	w := waking{newFake("w", j)}
	w.pace, w.wake = time.Hour, make(chan struct{}, 1)
	r := NewRunner(discard(), Entry{Component: a}, Entry{Component: w})
	stop := run(t, r)
	defer stop()
	await(t, "the first steps", func() bool { return a.stepped() == 1 && w.stepped() == 1 })
	r.Wake(a)
	await(t, "a woken", func() bool { return a.stepped() == 2 })
	w.wake <- struct{}{}
	await(t, "w woken by its channel", func() bool { return w.stepped() == 2 })
}

func TestNewRunnerRefusesANeedThatComesLater(t *testing.T) {
	j := &journal{}
	a, b := newFake("a", j), newFake("b", j)
	defer func() {
		if recover() == nil {
			t.Error("no panic for a component that needs one after it")
		}
	}()
	NewRunner(discard(), Entry{Component: a, Needs: b}, Entry{Component: b})
}

func TestCondition(t *testing.T) {
	c := NewCondition("etcd")
	if !c.Set(status.ReasonWaitForEtcd, "etcd to start") || c.Set(status.ReasonWaitForEtcd, "etcd to start") {
		t.Error("Set reports a change only when there is one")
	}
	var s status.Status
	c.Report(&s)
	if want := []status.Condition{{Component: "etcd", Reason: status.ReasonWaitForEtcd, Message: "etcd to start"}}; !slices.Equal(s.Conditions, want) {
		t.Errorf("reported %+v", s.Conditions)
	}
	if !c.Refuse(status.ReasonRefused, "another CA") {
		t.Error("a refusal is a change")
	}
	if got, _ := c.Get(); !got.Refused {
		t.Errorf("condition %+v, want refused", got)
	}
	if !c.Clear() || c.Clear() {
		t.Error("Clear reports a change only when there was a condition")
	}
	s = status.Status{}
	c.Report(&s)
	if len(s.Conditions) != 0 {
		t.Errorf("a cleared condition reports %+v", s.Conditions)
	}
}
