package units

import (
	"context"
	"errors"
	"fmt"
)

// Remove undoes Apply for the named units, for `ecom-agent reset`: it stops
// them (each bounded by JobTimeout), disables them, deletes their unit files
// and drop-in directories (an operator's drop-ins too), runs daemon-reload
// and clears the failed state, so systemd forgets them (LoadState
// "not-found"). It carries on past errors and returns them together. Units
// that do not exist are skipped.
func (m *Manager) Remove(ctx context.Context, names []string) error {
	for _, n := range names {
		if !validUnitName(n) {
			return fmt.Errorf("remove %s: invalid unit name", n)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()

	var errs []error
	for _, n := range names {
		st, err := m.Status(ctx, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", n, err))
			continue
		}
		if st.ActiveState != Inactive && st.ActiveState != Failed {
			if err := m.Stop(ctx, n); err != nil {
				errs = append(errs, fmt.Errorf("remove: %w", err))
			}
		}
	}

	var withFile []string
	for _, n := range names {
		ok, err := m.root.Exists(unitFilePath(n))
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", n, err))
		}
		if ok {
			withFile = append(withFile, n)
		}
	}
	if len(withFile) > 0 {
		cctx, cancel := m.call(ctx)
		_, err := m.conn.DisableUnitFilesContext(cctx, withFile, false)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("remove: disable %v: %w", withFile, err))
		}
	}

	changed := false
	for _, n := range names {
		removed, err := m.root.Remove(unitFilePath(n))
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", n, err))
		}
		dir := DropInDir(n)
		exists, err := m.root.Exists(dir)
		if err == nil && exists {
			err = m.root.RemoveAll(dir)
			removed = true
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s: drop-ins: %w", n, err))
		}
		changed = changed || removed
	}
	if changed || len(withFile) > 0 {
		cctx, cancel := m.call(ctx)
		err := m.conn.ReloadContext(cctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("remove: daemon-reload: %w", err))
		}
	}

	for _, n := range names {
		st, err := m.Status(ctx, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", n, err))
			continue
		}
		if st.Failed() {
			cctx, cancel := m.call(ctx)
			err := m.conn.ResetFailedUnitContext(cctx, n)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("remove %s: reset-failed: %w", n, err))
			}
		}
	}
	return errors.Join(errs...)
}
