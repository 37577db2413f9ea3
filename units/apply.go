package units

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// Changes says what Apply did.
type Changes struct {
	// Written lists the units whose unit file or managed drop-ins Apply
	// created, updated or removed, in the order of the specs.
	Written []string `json:"written,omitempty"`
	// Stale lists units whose files did not change now but that still run
	// with configuration older than their files: an earlier Apply changed
	// them and they were never restarted (the agent died in between).
	Stale []string `json:"stale,omitempty"`
	// Enabled lists the units Apply enabled.
	Enabled []string `json:"enabled,omitempty"`
	// Reloaded says whether Apply ran daemon-reload.
	Reloaded bool `json:"reloaded"`
}

// Changed returns the units to restart: Written, then Stale.
func (c Changes) Changed() []string {
	return slices.Concat(c.Written, c.Stale)
}

// rendered is a spec with its files.
type rendered struct {
	spec    *Spec
	file    []byte
	dropIns map[string][]byte // by file name
}

// Apply makes the unit files and drop-ins of specs what they say, enables
// the units that have WantedBy and are not enabled, and runs daemon-reload
// only when something changed or systemd reports a unit as needing it. It
// neither starts nor restarts anything: pass the result to
// RestartIfChanged. All specs are rendered before anything is written, so
// an invalid spec changes nothing.
func (m *Manager) Apply(ctx context.Context, specs []Spec) (Changes, error) {
	m.mu.Lock()
	defer m.mu.Unlock()

	all := make([]rendered, 0, len(specs))
	seen := map[string]bool{}
	for i := range specs {
		s := &specs[i]
		if seen[s.Name] {
			return Changes{}, fmt.Errorf("apply %s: given twice", s.Name)
		}
		seen[s.Name] = true
		r, err := render(s)
		if err != nil {
			return Changes{}, fmt.Errorf("apply %s: %w", s.Name, err)
		}
		all = append(all, r)
	}

	var ch Changes
	for _, r := range all {
		changed, err := m.write(r)
		if err != nil {
			return ch, fmt.Errorf("apply %s: %w", r.spec.Name, err)
		}
		if changed {
			ch.Written = append(ch.Written, r.spec.Name)
		}
	}

	reload := len(ch.Written) > 0
	for _, r := range all {
		props, err := m.unitProperties(ctx, r.spec.Name)
		if err != nil {
			return ch, fmt.Errorf("apply %s: %w", r.spec.Name, err)
		}
		if b, _ := props["NeedDaemonReload"].(bool); b {
			reload = true
		}
	}

	enabled, err := m.enable(ctx, all)
	ch.Enabled = enabled
	if err != nil {
		return ch, err
	}
	if len(enabled) > 0 {
		reload = true // as systemctl enable does, so targets see their new wants
	}

	if reload {
		cctx, cancel := m.call(ctx)
		defer cancel()
		if err := m.conn.ReloadContext(cctx); err != nil {
			return ch, fmt.Errorf("apply: daemon-reload: %w", err)
		}
		ch.Reloaded = true
	}

	for _, r := range all {
		if slices.Contains(ch.Written, r.spec.Name) {
			continue
		}
		stale, err := m.stale(ctx, r)
		if err != nil {
			return ch, fmt.Errorf("apply %s: %w", r.spec.Name, err)
		}
		if stale {
			ch.Stale = append(ch.Stale, r.spec.Name)
		}
	}
	return ch, nil
}

// render renders a spec's unit file and drop-ins.
func render(s *Spec) (rendered, error) {
	file, err := Render(*s)
	if err != nil {
		return rendered{}, err
	}
	r := rendered{spec: s, file: file, dropIns: map[string][]byte{}}
	for _, d := range s.DropIns {
		if r.dropIns[d.Name], err = RenderDropIn(s.Name, d.Options); err != nil {
			return rendered{}, fmt.Errorf("drop-in %s: %w", d.Name, err)
		}
	}
	return r, nil
}

// write writes a unit's files and removes the drop-ins ecom-agent wrote
// earlier that the spec no longer has. It reports whether anything changed.
func (m *Manager) write(r rendered) (bool, error) {
	changed := false
	res, err := m.root.WriteFile(r.spec.Path(), r.file, 0o644)
	if err != nil {
		return false, err
	}
	changed = changed || res != hostfs.Unchanged
	dir := DropInDir(r.spec.Name)
	for _, name := range slices.Sorted(maps.Keys(r.dropIns)) {
		res, err := m.root.WriteFile(path.Join(dir, name), r.dropIns[name], 0o644)
		if err != nil {
			return changed, err
		}
		changed = changed || res != hostfs.Unchanged
	}
	managed, err := m.managedDropIns(r.spec.Name)
	if err != nil {
		return changed, err
	}
	for _, name := range managed {
		if _, ok := r.dropIns[name]; ok {
			continue
		}
		if _, err := m.root.Remove(path.Join(dir, name)); err != nil {
			return changed, fmt.Errorf("remove old drop-in: %w", err)
		}
		changed = true
	}
	return changed, nil
}

// managedDropIns lists the drop-ins of unit name that ecom-agent wrote:
// those that start with its header.
func (m *Manager) managedDropIns(name string) ([]string, error) {
	dir := DropInDir(name)
	entries, err := os.ReadDir(m.root.Path(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list drop-ins: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		data, err := m.root.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read drop-in: %w", err)
		}
		if bytes.HasPrefix(data, []byte(generatedMark)) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// enable enables the units with an [Install] section that are not enabled.
func (m *Manager) enable(ctx context.Context, all []rendered) ([]string, error) {
	var names []string
	for _, r := range all {
		if len(r.spec.WantedBy) > 0 {
			names = append(names, r.spec.Name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	cctx, cancel := m.call(ctx)
	defer cancel()
	// Unit file states come from the files on disk, not from what systemd
	// has loaded, so they are right before daemon-reload too.
	files, err := m.conn.ListUnitFilesByPatternsContext(cctx, nil, names)
	if err != nil {
		return nil, fmt.Errorf("apply: list unit file states: %w", err)
	}
	state := map[string]string{}
	for _, f := range files {
		state[path.Base(f.Path)] = f.Type
	}
	var todo []string
	for _, n := range names {
		if state[n] != "enabled" {
			todo = append(todo, n)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	if _, _, err := m.conn.EnableUnitFilesContext(cctx, todo, false, false); err != nil {
		return nil, fmt.Errorf("apply: enable %s: %w", strings.Join(todo, " "), err)
	}
	return todo, nil
}

// stale reports whether the unit runs a main process started before its
// unit file or a managed drop-in was last written.
func (m *Manager) stale(ctx context.Context, r rendered) (bool, error) {
	newest := time.Time{}
	files := []string{r.spec.Path()}
	for name := range r.dropIns {
		files = append(files, path.Join(DropInDir(r.spec.Name), name))
	}
	for _, f := range files {
		fi, err := m.root.Stat(f)
		if err != nil {
			return false, err
		}
		if fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	st, err := m.Status(ctx, r.spec.Name)
	if err != nil {
		return false, err
	}
	if !st.runningOrStarting() || st.ExecMainStartTime.IsZero() {
		return false, nil
	}
	return st.ExecMainStartTime.Before(newest), nil
}

// unitProperties returns the org.freedesktop.systemd1.Unit properties.
func (m *Manager) unitProperties(ctx context.Context, name string) (map[string]any, error) {
	cctx, cancel := m.call(ctx)
	defer cancel()
	props, err := m.conn.GetUnitPropertiesContext(cctx, name)
	if err != nil {
		return nil, fmt.Errorf("get unit properties: %w", err)
	}
	return props, nil
}

// Enable enables installed units (their files written by a package or by
// Apply) that are not enabled yet, and returns those it enabled.
func (m *Manager) Enable(ctx context.Context, names ...string) ([]string, error) {
	var all []rendered
	for _, n := range names {
		all = append(all, rendered{spec: &Spec{Name: n, WantedBy: []string{"multi-user.target"}}})
	}
	return m.enable(ctx, all)
}

// Disable disables units while keeping their files (ecom-agent.service,
// whose file the package owns), and returns those it disabled. A unit
// that is not enabled, or not installed, is left alone.
func (m *Manager) Disable(ctx context.Context, names ...string) ([]string, error) {
	var enabled []string
	for _, n := range names {
		if !validUnitName(n) {
			return nil, fmt.Errorf("disable %s: invalid unit name", n)
		}
		props, err := m.unitProperties(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("disable %s: %w", n, err)
		}
		if s, _ := props["UnitFileState"].(string); s == "enabled" || s == "enabled-runtime" {
			enabled = append(enabled, n)
		}
	}
	if len(enabled) == 0 {
		return nil, nil
	}
	cctx, cancel := m.call(ctx)
	defer cancel()
	if _, err := m.conn.DisableUnitFilesContext(cctx, enabled, false); err != nil {
		return nil, fmt.Errorf("disable %v: %w", enabled, err)
	}
	return enabled, nil
}

// Reload makes systemd re-read unit files (daemon-reload).
func (m *Manager) Reload(ctx context.Context) error {
	cctx, cancel := m.call(ctx)
	defer cancel()
	if err := m.conn.ReloadContext(cctx); err != nil {
		return fmt.Errorf("daemon-reload: %w", err)
	}
	return nil
}
