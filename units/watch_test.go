package units

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
)

func TestWatch(t *testing.T) {
	f, m := newFake(t)
	f.updates = make(chan map[string]*dbus.UnitStatus)
	f.errs = make(chan error)
	f.set("etcd.service", "LoadState", "loaded", "ActiveState", "active", "SubState", "running")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan UnitStatus, 10)
	done := make(chan error, 1)
	go func() {
		done <- m.Watch(ctx, []string{"etcd.service"}, func(s UnitStatus) { seen <- s })
	}()
	next := func() UnitStatus {
		t.Helper()
		select {
		case s := <-seen:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("no status")
		}
		return UnitStatus{}
	}
	if s := next(); s.Name != "etcd.service" || !s.Running() {
		t.Fatalf("first status %+v", s)
	}

	// A poll showing the same state again reports nothing; one showing
	// the unit failed does. Other units are filtered out.
	f.updates <- map[string]*dbus.UnitStatus{"etcd.service": {Name: "etcd.service"}, "other.service": {}}
	f.set("etcd.service", "ActiveState", "failed", "SubState", "failed", "Result", "exit-code")
	f.updates <- map[string]*dbus.UnitStatus{"etcd.service": {Name: "etcd.service"}}
	if s := next(); !s.Failed() || s.Result != "exit-code" {
		t.Fatalf("status after failure %+v", s)
	}
	select {
	case s := <-seen:
		t.Fatalf("unexpected status %+v", s)
	default:
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}

func TestWatchGivesUpOnErrors(t *testing.T) {
	f, m := newFake(t)
	f.updates = make(chan map[string]*dbus.UnitStatus)
	f.errs = make(chan error)
	done := make(chan error, 1)
	go func() { done <- m.Watch(context.Background(), []string{"x.service"}, func(UnitStatus) {}) }()
	go func() {
		for range maxWatchErrors {
			select {
			case f.errs <- errors.New("connection reset"):
			case <-time.After(5 * time.Second):
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Watch returned nil after repeated errors")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not give up")
	}
}
