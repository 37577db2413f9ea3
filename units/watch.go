package units

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/coreos/go-systemd/v22/dbus"
)

// maxWatchErrors is how many failed polls in a row end a Watch.
const maxWatchErrors = 5

// Watch calls fn with the status of each named unit once at the start and
// then whenever its load, active or sub state changes, until ctx is done
// (then it returns nil) or systemd stops answering (then it returns the
// error). It polls every WatchInterval, so a state that lasts less than that
// can be missed; fn runs on Watch's goroutine and delays the next poll.
func (m *Manager) Watch(ctx context.Context, names []string, fn func(UnitStatus)) error {
	want := map[string]bool{}
	for _, n := range names {
		if !validUnitName(n) {
			return fmt.Errorf("watch %s: invalid unit name", n)
		}
		want[n] = true
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	last := map[string]UnitStatus{}
	report := func(name string) error {
		st, err := m.Status(ctx, name)
		if err != nil {
			return err
		}
		if prev, ok := last[name]; ok && !stateDiffers(prev, st) {
			return nil
		}
		last[name] = st
		fn(st)
		return nil
	}
	for _, n := range slices.Sorted(maps.Keys(want)) {
		if err := report(n); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
	}

	updates, errs := m.conn.SubscribeUnitsCustomContext(ctx, m.opts.WatchInterval, 0,
		func(a, b *dbus.UnitStatus) bool {
			return a.LoadState != b.LoadState || a.ActiveState != b.ActiveState || a.SubState != b.SubState
		},
		func(name string) bool { return !want[name] })

	// go-systemd's poller blocks sending until it sees ctx done, and closes
	// both channels after: read them to the end so it can exit.
	var (
		failures int
		result   error
	)
	for updates != nil || errs != nil {
		select {
		case changed, ok := <-updates:
			if !ok {
				updates = nil
				continue
			}
			failures = 0
			for _, n := range slices.Sorted(maps.Keys(changed)) {
				if ctx.Err() != nil || !want[n] {
					continue
				}
				if err := report(n); err != nil && ctx.Err() == nil {
					failures++
				}
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if ctx.Err() == nil {
				failures++
				if result == nil && (failures >= maxWatchErrors || !m.conn.Connected()) {
					result = fmt.Errorf("watch: %w", err)
					cancel()
				}
			}
		}
		if failures >= maxWatchErrors && result == nil {
			result = errors.New("watch: unit status keeps failing")
			cancel()
		}
	}
	return result
}

// stateDiffers reports whether a watcher would see a change between a and b.
func stateDiffers(a, b UnitStatus) bool {
	return a.LoadState != b.LoadState || a.ActiveState != b.ActiveState || a.SubState != b.SubState
}
