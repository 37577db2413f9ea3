package units

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
)

// systemd is the part of go-systemd's *dbus.Conn the Manager uses, so unit
// tests can put a fake in its place.
type systemd interface {
	ReloadContext(ctx context.Context) error
	ListUnitFilesByPatternsContext(ctx context.Context, states, patterns []string) ([]dbus.UnitFile, error)
	EnableUnitFilesContext(ctx context.Context, files []string, runtime, force bool) (bool, []dbus.EnableUnitFileChange, error)
	DisableUnitFilesContext(ctx context.Context, files []string, runtime bool) ([]dbus.DisableUnitFileChange, error)
	StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	RestartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	ResetFailedUnitContext(ctx context.Context, name string) error
	GetUnitPropertiesContext(ctx context.Context, name string) (map[string]any, error)
	GetUnitTypePropertiesContext(ctx context.Context, name, unitType string) (map[string]any, error)
	SubscribeUnitsCustomContext(ctx context.Context, interval time.Duration, buffer int,
		isChanged func(*dbus.UnitStatus, *dbus.UnitStatus) bool, filterUnit func(string) bool) (<-chan map[string]*dbus.UnitStatus, <-chan error)
	Connected() bool
	Close()
}

var _ systemd = (*dbus.Conn)(nil)

// dial connects to systemd: over the system bus, or, as root, over
// systemd's private socket /run/systemd/private when there is no bus
// (early boot, a host without dbus-daemon). The connection lives until ctx
// is done; dialing gives up after timeout.
func dial(ctx context.Context, timeout time.Duration) (*dbus.Conn, error) {
	type result struct {
		conn *dbus.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := dbus.NewSystemConnectionContext(ctx)
		if err != nil && os.Geteuid() == 0 {
			var perr error
			if conn, perr = dbus.NewSystemdConnectionContext(ctx); perr == nil {
				err = nil
			} else {
				err = errors.Join(fmt.Errorf("system bus: %w", err), fmt.Errorf("private socket: %w", perr))
			}
		}
		done <- result{conn, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.conn, r.err
	case <-timer.C:
	case <-ctx.Done():
	}
	// Whatever the dial still returns is closed: the caller's cancel of ctx
	// unblocks it, since go-dbus closes connections whose context is done.
	go func() {
		if r := <-done; r.conn != nil {
			r.conn.Close()
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("no answer after %s", timeout)
}
