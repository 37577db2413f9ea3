package units

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStatus(t *testing.T) {
	f, m := newFake(t)
	since := time.Date(2026, 1, 5, 10, 0, 0, 123000, time.UTC)
	f.set("etcd.service",
		"LoadState", "loaded", "ActiveState", "active", "SubState", "running",
		"UnitFileState", "enabled", "NeedDaemonReload", false,
		"ActiveEnterTimestamp", uint64(since.UnixMicro()),
		"StateChangeTimestamp", uint64(since.Add(time.Second).UnixMicro()),
		"Result", "success", "ExecMainPID", uint32(4242), "ExecMainStatus", int32(0),
		"ExecMainStartTimestamp", uint64(since.UnixMicro()), "NRestarts", uint32(3))
	st, err := m.Status(context.Background(), "etcd.service")
	if err != nil {
		t.Fatal(err)
	}
	want := UnitStatus{
		Name: "etcd.service", LoadState: "loaded", ActiveState: "active", SubState: "running",
		Result: "success", UnitFileState: "enabled", ExecMainPID: 4242,
		ExecMainStartTime: since, NRestarts: 3, ActiveEnterTime: since, StateChangeTime: since.Add(time.Second),
	}
	if diff := cmp.Diff(want, st, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if !st.Running() || st.Failed() || !st.Exists() {
		t.Errorf("Running %v Failed %v Exists %v", st.Running(), st.Failed(), st.Exists())
	}

	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"load_state":"loaded"`, `"active_state"`, `"sub_state"`, `"unit_file_state"`,
		`"exec_main_pid":4242`, `"exec_main_status":0`, `"n_restarts":3`, `"active_enter_time":"2026-01-05T`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("JSON %s lacks %s", data, key)
		}
	}

	st, err = m.Status(context.Background(), "nothing.service")
	if err != nil || st.LoadState != "not-found" || st.Exists() {
		t.Errorf("status of a missing unit = %+v, %v", st, err)
	}
	if strings.Contains(mustJSON(t, st), "time") {
		t.Errorf("zero times are not left out: %s", mustJSON(t, st))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestJournal(t *testing.T) {
	_, m := newFake(t)
	runner := m.opts.Runner.(*fakeRunner)
	runner.out = "2026-01-05T10:00:00+0000 h etcd[1]: one\n2026-01-05T10:00:01+0000 h etcd[1]: two\n"
	lines, err := m.Journal(context.Background(), "etcd.service", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || !strings.HasSuffix(lines[1], "two") {
		t.Errorf("lines %q", lines)
	}
	want := []string{"journalctl", "-u", "etcd.service", "-n", "2", "-o", "short-iso", "--no-pager", "--quiet"}
	if diff := cmp.Diff(want, runner.calls[0]); diff != "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}

	runner.out = "-- No entries --\n"
	if lines, err := m.Journal(context.Background(), "etcd.service", 5); err != nil || len(lines) != 0 {
		t.Errorf("no entries: %q, %v", lines, err)
	}
	runner.err = errors.New("exit status 1")
	if _, err := m.Journal(context.Background(), "etcd.service", 5); err == nil || !strings.Contains(err.Error(), "etcd.service") {
		t.Errorf("failing journalctl: %v", err)
	}
}

func TestExecRunner(t *testing.T) {
	out, err := ExecRunner{}.Output(context.Background(), "sh", "-c", "echo out; echo err >&2")
	if err != nil || string(out) != "out\n" {
		t.Errorf("Output = %q, %v", out, err)
	}
	_, err = ExecRunner{}.Output(context.Background(), "sh", "-c", "echo why >&2; exit 3")
	if err == nil || !strings.Contains(err.Error(), "why") {
		t.Errorf("failing command: %v, want its stderr in the error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := (ExecRunner{}).Output(ctx, "sleep", "10"); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("slow command: %v after %s", err, time.Since(start))
	}
}
