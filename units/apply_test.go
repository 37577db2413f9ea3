package units

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
	"github.com/google/go-cmp/cmp"
)

func testSpecs() []Spec {
	return []Spec{
		{
			Name:      "a.service",
			ExecStart: []string{"/bin/sleep", "infinity"},
			WantedBy:  []string{"multi-user.target"},
			DropIns: []DropIn{{Name: "10-limits.conf", Options: []*unit.UnitOption{
				unit.NewUnitOption("Service", "LimitNOFILE", "1024"),
			}}},
		},
		{
			Name:      "b.service",
			ExecStart: []string{"/bin/sleep", "infinity"},
			WantedBy:  []string{"multi-user.target"},
		},
		{
			Name:      "static.service",
			ExecStart: []string{"/bin/true"},
		},
	}
}

func TestApplyWritesReloadsAndEnablesOnce(t *testing.T) {
	f, m := newFake(t)
	ctx := context.Background()
	specs := testSpecs()

	ch, err := m.Apply(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	want := Changes{
		Written:  []string{"a.service", "b.service", "static.service"},
		Enabled:  []string{"a.service", "b.service"},
		Reloaded: true,
	}
	if diff := cmp.Diff(want, ch); diff != "" {
		t.Errorf("first apply (-want +got):\n%s", diff)
	}
	wantCalls := []string{"list-unit-files a.service b.service", "enable a.service b.service", "reload"}
	if diff := cmp.Diff(wantCalls, f.takeCalls()); diff != "" {
		t.Errorf("first apply calls (-want +got):\n%s", diff)
	}
	for _, s := range specs {
		got, err := os.ReadFile(m.root.Path("/etc/systemd/system/" + s.Name))
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := Render(s); string(got) != string(r) {
			t.Errorf("%s on disk differs from Render", s.Name)
		}
	}
	if _, err := os.Stat(m.root.Path("/etc/systemd/system/a.service.d/10-limits.conf")); err != nil {
		t.Errorf("drop-in not written: %v", err)
	}

	// The same specs again: nothing to do, no daemon-reload.
	ch, err = m.Apply(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Changes{}, ch); diff != "" {
		t.Errorf("second apply (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"list-unit-files a.service b.service"}, f.takeCalls()); diff != "" {
		t.Errorf("second apply calls (-want +got):\n%s", diff)
	}

	// One spec changed: reload, and only that unit is reported.
	specs[1].ExecStart = []string{"/bin/sleep", "1000"}
	ch, err = m.Apply(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Changes{Written: []string{"b.service"}, Reloaded: true}, ch); diff != "" {
		t.Errorf("third apply (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"list-unit-files a.service b.service", "reload"}, f.takeCalls()); diff != "" {
		t.Errorf("third apply calls (-want +got):\n%s", diff)
	}

	// Only a drop-in changed: the unit counts as changed.
	specs[0].DropIns[0].Options[0].Value = "2048"
	ch, err = m.Apply(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Changes{Written: []string{"a.service"}, Reloaded: true}, ch); diff != "" {
		t.Errorf("drop-in apply (-want +got):\n%s", diff)
	}
}

func TestApplyDropInsKeepsOperatorOverrides(t *testing.T) {
	f, m := newFake(t)
	ctx := context.Background()
	specs := testSpecs()
	if _, err := m.Apply(ctx, specs); err != nil {
		t.Fatal(err)
	}
	override := m.root.Path("/etc/systemd/system/a.service.d/override.conf")
	if err := os.WriteFile(override, []byte("[Service]\nEnvironment=DEBUG=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.takeCalls()

	specs[0].DropIns = nil
	ch, err := m.Apply(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Changes{Written: []string{"a.service"}, Reloaded: true}, ch); diff != "" {
		t.Errorf("apply (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(m.root.Path("/etc/systemd/system/a.service.d/10-limits.conf")); !os.IsNotExist(err) {
		t.Errorf("old managed drop-in still there: %v", err)
	}
	if _, err := os.Stat(override); err != nil {
		t.Errorf("operator's override.conf removed: %v", err)
	}
}

func TestApplyReloadsWhenSystemdNeedsIt(t *testing.T) {
	f, m := newFake(t)
	ctx := context.Background()
	if _, err := m.Apply(ctx, testSpecs()); err != nil {
		t.Fatal(err)
	}
	f.takeCalls()
	// Files are current but systemd has not loaded them (an earlier Apply
	// died before its daemon-reload).
	f.set("b.service", "NeedDaemonReload", true)
	ch, err := m.Apply(ctx, testSpecs())
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Reloaded || len(ch.Written) != 0 {
		t.Errorf("apply = %+v, want a reload and nothing written", ch)
	}
}

func TestApplyReportsStaleRunningUnits(t *testing.T) {
	f, m := newFake(t)
	ctx := context.Background()
	if _, err := m.Apply(ctx, testSpecs()); err != nil {
		t.Fatal(err)
	}
	// a.service runs a process started before its file was written: the
	// restart after an earlier Apply never happened. b.service started
	// after its files were written.
	fi, err := m.root.Stat("/etc/systemd/system/a.service")
	if err != nil {
		t.Fatal(err)
	}
	written := fi.ModTime()
	f.set("a.service", "ActiveState", "active", "SubState", "running",
		"ExecMainStartTimestamp", uint64(written.Add(-time.Minute).UnixMicro()))
	f.set("b.service", "ActiveState", "active", "SubState", "running",
		"ExecMainStartTimestamp", uint64(written.Add(time.Second).UnixMicro()))
	ch, err := m.Apply(ctx, testSpecs())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Changes{Stale: []string{"a.service"}}, ch); diff != "" {
		t.Errorf("apply (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a.service"}, ch.Changed()); diff != "" {
		t.Errorf("Changed (-want +got):\n%s", diff)
	}
}

func TestApplyInvalidSpecWritesNothing(t *testing.T) {
	f, m := newFake(t)
	specs := testSpecs()
	specs[2].ExecStart = []string{"relative"}
	if _, err := m.Apply(context.Background(), specs); err == nil {
		t.Fatal("Apply accepted an invalid spec")
	}
	if ok, _ := m.root.Exists("/etc/systemd/system/a.service"); ok {
		t.Error("a.service was written although static.service is invalid")
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Errorf("calls: %q", calls)
	}
	specs = testSpecs()
	specs[1].Name = specs[0].Name
	if _, err := m.Apply(context.Background(), specs); err == nil {
		t.Fatal("Apply accepted a unit given twice")
	}
}

func TestRemove(t *testing.T) {
	f, m := newFake(t)
	ctx := context.Background()
	if _, err := m.Apply(ctx, testSpecs()); err != nil {
		t.Fatal(err)
	}
	f.set("a.service", "ActiveState", "active", "SubState", "running")
	f.set("b.service", "ActiveState", "failed", "SubState", "failed")
	f.takeCalls()

	if err := m.Remove(ctx, []string{"a.service", "b.service", "gone.service"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"stop a.service", "disable a.service b.service", "reload", "reset-failed b.service"}
	if diff := cmp.Diff(want, f.takeCalls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	for _, p := range []string{"/etc/systemd/system/a.service", "/etc/systemd/system/a.service.d", "/etc/systemd/system/b.service"} {
		if ok, _ := m.root.Exists(p); ok {
			t.Errorf("%s still exists", p)
		}
	}
	// Removing again finds nothing to do.
	if err := m.Remove(ctx, []string{"a.service", "b.service"}); err != nil {
		t.Fatal(err)
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Errorf("second remove calls: %q", calls)
	}
}

func TestDisableKeepsTheFile(t *testing.T) {
	f, m := newFake(t)
	ctx := context.Background()
	if _, err := m.Apply(ctx, testSpecs()); err != nil {
		t.Fatal(err)
	}
	f.takeCalls()
	got, err := m.Disable(ctx, "a.service", "never-installed.service")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a.service"}, got); diff != "" {
		t.Errorf("disabled (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"disable a.service"}, f.takeCalls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if ok, _ := m.root.Exists("/etc/systemd/system/a.service"); !ok {
		t.Error("Disable removed the unit file")
	}
	if got, err := m.Disable(ctx, "a.service"); err != nil || len(got) != 0 {
		t.Errorf("second Disable = %v, %v; want nothing to do", got, err)
	}
	if _, err := m.Disable(ctx, "../etc/passwd"); err == nil {
		t.Error("Disable accepted an invalid unit name")
	}
}
