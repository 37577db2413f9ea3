package units

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// ActiveState is a unit's high-level state as systemd reports it.
type ActiveState string

// The unit states systemd reports.
const (
	Active       ActiveState = "active"
	Activating   ActiveState = "activating"
	Deactivating ActiveState = "deactivating"
	Inactive     ActiveState = "inactive"
	Failed       ActiveState = "failed"
	Reloading    ActiveState = "reloading"
)

// UnitStatus is the state of a unit as systemd reports it.
type UnitStatus struct {
	Name string `json:"name"`
	// LoadState is "loaded", "not-found", "masked", "error", ...
	LoadState string `json:"load_state"`
	// ActiveState is "active", "activating", "deactivating", "inactive",
	// "failed" or "reloading".
	ActiveState ActiveState `json:"active_state"`
	// SubState is the service's own state: "running", "exited", "dead",
	// "auto-restart", "start-pre", ...
	SubState string `json:"sub_state"`
	// Result is how the service last ended: "success", "exit-code",
	// "signal", "core-dump", "timeout", "start-limit-hit", ...
	Result string `json:"result,omitempty"`
	// UnitFileState is "enabled", "disabled", "static", ... or empty when
	// there is no unit file.
	UnitFileState string `json:"unit_file_state,omitempty"`
	// NeedDaemonReload says the unit's files changed since systemd loaded
	// them.
	NeedDaemonReload bool `json:"need_daemon_reload,omitempty"`
	// ExecMainPID is the main process, 0 when there is none.
	ExecMainPID uint32 `json:"exec_main_pid,omitempty"`
	// ExecMainStatus is the exit status or signal of the last main process.
	ExecMainStatus int32 `json:"exec_main_status"`
	// ExecMainStartTime is when the current or last main process started.
	ExecMainStartTime time.Time `json:"exec_main_start_time,omitzero"`
	// NRestarts counts automatic restarts (Restart=) since the unit was
	// last started by a job.
	NRestarts uint32 `json:"n_restarts"`
	// ActiveEnterTime is when the unit last became active.
	ActiveEnterTime time.Time `json:"active_enter_time,omitzero"`
	// StateChangeTime is when ActiveState last changed.
	StateChangeTime time.Time `json:"state_change_time,omitzero"`
}

// Running reports whether the service is active with its main process up.
func (s UnitStatus) Running() bool {
	return s.ActiveState == Active && s.SubState == "running"
}

// Failed reports whether the unit is in the failed state.
func (s UnitStatus) Failed() bool { return s.ActiveState == Failed }

// Exists reports whether systemd has a unit file for the unit.
func (s UnitStatus) Exists() bool { return s.LoadState != "not-found" && s.LoadState != "" }

// runningOrStarting reports whether the unit is up or on its way up,
// including waiting to be restarted after a crash.
func (s UnitStatus) runningOrStarting() bool {
	switch s.ActiveState {
	case "active", "activating", "reloading":
		return true
	}
	return false
}

// Status returns the state of the unit name. A unit systemd knows nothing
// about is not an error: its LoadState is "not-found".
func (m *Manager) Status(ctx context.Context, name string) (UnitStatus, error) {
	if !validUnitName(name) {
		return UnitStatus{}, fmt.Errorf("status %s: invalid unit name", name)
	}
	cctx, cancel := m.call(ctx)
	defer cancel()
	up, err := m.conn.GetUnitPropertiesContext(cctx, name)
	if err != nil {
		return UnitStatus{}, fmt.Errorf("status %s: %w", name, err)
	}
	st := UnitStatus{
		Name:             name,
		LoadState:        str(up["LoadState"]),
		ActiveState:      ActiveState(str(up["ActiveState"])),
		SubState:         str(up["SubState"]),
		UnitFileState:    str(up["UnitFileState"]),
		ActiveEnterTime:  usecTime(up["ActiveEnterTimestamp"]),
		StateChangeTime:  usecTime(up["StateChangeTimestamp"]),
		NeedDaemonReload: up["NeedDaemonReload"] == true,
	}
	if !strings.HasSuffix(name, ".service") {
		return st, nil
	}
	sp, err := m.conn.GetUnitTypePropertiesContext(cctx, name, "Service")
	if err != nil {
		if st.LoadState == "not-found" {
			return st, nil
		}
		return UnitStatus{}, fmt.Errorf("status %s: service properties: %w", name, err)
	}
	st.Result = str(sp["Result"])
	st.ExecMainPID = uint32(num(sp["ExecMainPID"]))
	st.ExecMainStatus = int32(num(sp["ExecMainStatus"]))
	st.ExecMainStartTime = usecTime(sp["ExecMainStartTimestamp"])
	st.NRestarts = uint32(num(sp["NRestarts"]))
	return st, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// num converts the integer types D-Bus properties come in.
func num(v any) int64 {
	switch n := v.(type) {
	case int32:
		return int64(n)
	case uint32:
		return int64(n)
	case int64:
		return n
	case uint64:
		return int64(n)
	case int:
		return int64(n)
	}
	return 0
}

// usecTime converts a systemd timestamp (µs since the epoch, 0 for never).
func usecTime(v any) time.Time {
	us := num(v)
	if us <= 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}
