package units

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
	"github.com/ecom-platform/ecom-agent/hostfs"
)

// fakeConn stands in for systemd. It records the calls that change
// something (and the unit file listing), keeps unit file states, and
// answers jobs with the results a test sets.
type fakeConn struct {
	root *hostfs.Root

	mu         sync.Mutex
	calls      []string
	fileStates map[string]string         // unit file state by unit
	props      map[string]map[string]any // unit and service properties by unit
	jobResults map[string]string         // by "op unit"; "" never answers; default "done"
	updates    chan map[string]*dbus.UnitStatus
	errs       chan error
}

func newFake(t *testing.T) (*fakeConn, *Manager) {
	t.Helper()
	root, err := hostfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeConn{
		root:       root,
		fileStates: map[string]string{},
		props:      map[string]map[string]any{},
		jobResults: map[string]string{},
	}
	opts := Options{JobTimeout: 5 * time.Second, Runner: &fakeRunner{}}.withDefaults()
	return f, newManager(f, root, opts)
}

func (f *fakeConn) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// takeCalls returns the calls recorded since the last takeCalls.
func (f *fakeConn) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// set sets properties of a unit.
func (f *fakeConn) set(name string, kv ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.props[name] == nil {
		f.props[name] = map[string]any{}
	}
	for i := 0; i < len(kv); i += 2 {
		f.props[name][kv[i].(string)] = kv[i+1]
	}
}

func (f *fakeConn) hasFile(name string) bool {
	ok, _ := f.root.Exists(unitFilePath(name))
	return ok
}

func (f *fakeConn) ReloadContext(ctx context.Context) error {
	f.record("reload")
	return ctx.Err()
}

func (f *fakeConn) ListUnitFilesByPatternsContext(ctx context.Context, states, patterns []string) ([]dbus.UnitFile, error) {
	f.record("list-unit-files %s", strings.Join(patterns, " "))
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []dbus.UnitFile
	for _, p := range patterns {
		if !f.hasFile(p) {
			continue
		}
		st := f.fileStates[p]
		if st == "" {
			st = "disabled"
		}
		out = append(out, dbus.UnitFile{Path: path.Join("/etc/systemd/system", p), Type: st})
	}
	return out, nil
}

func (f *fakeConn) EnableUnitFilesContext(ctx context.Context, files []string, runtime, force bool) (bool, []dbus.EnableUnitFileChange, error) {
	f.record("enable %s", strings.Join(files, " "))
	f.mu.Lock()
	defer f.mu.Unlock()
	var changes []dbus.EnableUnitFileChange
	for _, n := range files {
		f.fileStates[n] = "enabled"
		changes = append(changes, dbus.EnableUnitFileChange{Type: "symlink", Filename: "/etc/systemd/system/multi-user.target.wants/" + n})
	}
	return true, changes, nil
}

func (f *fakeConn) DisableUnitFilesContext(ctx context.Context, files []string, runtime bool) ([]dbus.DisableUnitFileChange, error) {
	f.record("disable %s", strings.Join(files, " "))
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range files {
		f.fileStates[n] = "disabled"
	}
	return nil, nil
}

func (f *fakeConn) job(op, name string, ch chan<- string) (int, error) {
	f.record("%s %s", op, name)
	f.mu.Lock()
	result, ok := f.jobResults[op+" "+name]
	if !ok {
		result = "done"
	}
	if result == "done" {
		switch op {
		case "start", "restart":
			f.setLocked(name, "ActiveState", "active", "SubState", "running")
		case "stop":
			f.setLocked(name, "ActiveState", "inactive", "SubState", "dead")
		}
	}
	f.mu.Unlock()
	if result != "" {
		// Like go-systemd, answer from another goroutine, later.
		go func() { ch <- result }()
	}
	return 1, nil
}

func (f *fakeConn) setLocked(name string, kv ...any) {
	if f.props[name] == nil {
		f.props[name] = map[string]any{}
	}
	for i := 0; i < len(kv); i += 2 {
		f.props[name][kv[i].(string)] = kv[i+1]
	}
}

func (f *fakeConn) StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	return f.job("start", name, ch)
}

func (f *fakeConn) StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	return f.job("stop", name, ch)
}

func (f *fakeConn) RestartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	return f.job("restart", name, ch)
}

func (f *fakeConn) ResetFailedUnitContext(ctx context.Context, name string) error {
	f.record("reset-failed %s", name)
	f.set(name, "ActiveState", "inactive")
	return nil
}

func (f *fakeConn) GetUnitPropertiesContext(ctx context.Context, name string) (map[string]any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]any{"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead", "UnitFileState": ""}
	if f.hasFile(name) {
		out["LoadState"] = "loaded"
		out["UnitFileState"] = cmpOr(f.fileStates[name], "disabled")
	}
	maps.Copy(out, f.props[name])
	return out, nil
}

func (f *fakeConn) GetUnitTypePropertiesContext(ctx context.Context, name, unitType string) (map[string]any, error) {
	return f.GetUnitPropertiesContext(ctx, name)
}

func (f *fakeConn) SubscribeUnitsCustomContext(ctx context.Context, interval time.Duration, buffer int,
	isChanged func(*dbus.UnitStatus, *dbus.UnitStatus) bool, filterUnit func(string) bool) (<-chan map[string]*dbus.UnitStatus, <-chan error) {
	f.record("subscribe")
	out := make(chan map[string]*dbus.UnitStatus)
	errs := make(chan error)
	go func() {
		defer close(out)
		defer close(errs)
		for {
			select {
			case <-ctx.Done():
				return
			case u := <-f.updates:
				changed := map[string]*dbus.UnitStatus{}
				for n, s := range u {
					if !filterUnit(n) {
						changed[n] = s
					}
				}
				if len(changed) > 0 {
					out <- changed // blocks like go-systemd's poller
				}
			case err := <-f.errs:
				errs <- err
			}
		}
	}()
	return out, errs
}

func (f *fakeConn) Connected() bool { return true }
func (f *fakeConn) Close()          {}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// fakeRunner answers journalctl with canned lines and records its calls.
type fakeRunner struct {
	mu    sync.Mutex
	calls [][]string
	out   string
	err   error
}

func (r *fakeRunner) Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, slices.Concat([]string{name}, args))
	if slices.Contains(args, "--sync") {
		return nil, nil
	}
	return []byte(r.out), r.err
}
