//go:build e2e

package units_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
	"github.com/ecom-platform/ecom-agent/units"
	"github.com/google/go-cmp/cmp"
)

// The end-to-end test runs the Manager against a real systemd: it builds
// unitsctl (units/internal/unitsctl), copies it into a test host and runs
// it there, where it talks to the host's own D-Bus.
//
//	go test -tags e2e ./units   (as root)

const ctl = "/usr/local/bin/unitsctl"

// e2eHost runs unitsctl and other commands on a test host.
type e2eHost struct {
	t *testing.T
	h *testhost.Host
}

// run runs args on the host and returns stdout and the exit code.
func (e e2eHost) run(args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.t.Context(), 3*time.Minute)
	defer cancel()
	res, err := e.h.Run(ctx, args...)
	if err != nil && res.ExitCode <= 0 {
		e.t.Fatal(err)
	}
	if res.Stderr != "" {
		e.t.Logf("%s: stderr: %s", strings.Join(args, " "), strings.TrimSpace(res.Stderr))
	}
	return res.Stdout, res.ExitCode
}

// ctl runs unitsctl, which must succeed, and decodes its output into out.
func (e e2eHost) ctl(out any, args ...string) {
	e.t.Helper()
	stdout, code := e.run(append([]string{ctl}, args...)...)
	if code != 0 {
		e.t.Fatalf("unitsctl %s: exit %d: %s", strings.Join(args, " "), code, stdout)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			e.t.Fatalf("unitsctl %s: %v: %s", strings.Join(args, " "), err, stdout)
		}
	}
}

type applyResult struct {
	Changes   units.Changes `json:"changes"`
	Restarted []string      `json:"restarted"`
}

// apply applies specs with unitsctl apply -restart.
func (e e2eHost) apply(specs ...units.Spec) applyResult {
	e.t.Helper()
	data, err := json.Marshal(specs)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.h.WriteFile("/root/specs.json", data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	var r applyResult
	e.ctl(&r, "apply", "-restart", "/root/specs.json")
	return r
}

func (e e2eHost) status(name string) units.UnitStatus {
	e.t.Helper()
	var st units.UnitStatus
	e.ctl(&st, "status", name)
	return st
}

// await polls the unit's status until ok accepts it.
func (e e2eHost) await(name, what string, ok func(units.UnitStatus) bool) units.UnitStatus {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := e.status(name)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: not %s after 30s: %+v", name, what, st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// reloads returns when systemd last loaded its units (boot or reload).
func (e e2eHost) reloads() string {
	e.t.Helper()
	out, _ := e.run("systemctl", "show", "-p", "UnitsLoadTimestampMonotonic,UnitsLoadFinishTimestampMonotonic")
	return out
}

func buildUnitsctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "unitsctl")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./internal/unitsctl")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build unitsctl: %v\n%s", err, out)
	}
	return bin
}

func sleeper(name, arg string) units.Spec {
	return units.Spec{
		Name:         name,
		Description:  "units e2e " + name,
		ExecStart:    []string{"/bin/sleep", arg},
		Restart:      units.RestartAlways,
		RestartDelay: 200 * time.Millisecond,
		StartLimit:   &units.StartLimit{},
		WantedBy:     []string{"multi-user.target"},
	}
}

func TestSystemd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for test hosts")
	}
	bin := buildUnitsctl(t)
	h := testhost.Start(t, 1)[0]
	if err := h.CopyIn(bin, ctl, 0o755); err != nil {
		t.Fatal(err)
	}
	e := e2eHost{t, h}
	alpha, beta := sleeper("alpha.service", "infinity"), sleeper("beta.service", "infinity")

	t.Run("apply and start", func(t *testing.T) {
		e := e2eHost{t, h}
		before := e.reloads()
		r := e.apply(alpha, beta)
		want := units.Changes{
			Written:  []string{"alpha.service", "beta.service"},
			Enabled:  []string{"alpha.service", "beta.service"},
			Reloaded: true,
		}
		if diff := cmp.Diff(want, r.Changes); diff != "" {
			t.Errorf("changes (-want +got):\n%s", diff)
		}
		// Both were enabled, so RestartIfChanged started them.
		if diff := cmp.Diff([]string{"alpha.service", "beta.service"}, r.Restarted); diff != "" {
			t.Errorf("restarted (-want +got):\n%s", diff)
		}
		if e.reloads() == before {
			t.Error("systemd did not reload")
		}
		for _, n := range []string{"alpha.service", "beta.service"} {
			st := e.await(n, "running", units.UnitStatus.Running)
			if st.UnitFileState != "enabled" || st.ExecMainPID == 0 || st.LoadState != "loaded" {
				t.Errorf("%s: %+v", n, st)
			}
			if got, _ := e.run("systemctl", "is-enabled", n); strings.TrimSpace(got) != "enabled" {
				t.Errorf("systemctl is-enabled %s = %q", n, got)
			}
		}
		e.ctl(nil, "start", "alpha.service") // already running: done
	})

	t.Run("failing start", func(t *testing.T) {
		e := e2eHost{t, h}
		boom := units.Spec{
			Name:      "boom.service",
			Type:      units.TypeNotify,
			ExecStart: []string{"/bin/sh", "-c", "echo boom >&2; exit 3"},
		}
		e.apply(boom)
		out, code := e.run(ctl, "start", "boom.service")
		if code != 1 {
			t.Fatalf("unitsctl start boom.service: exit %d: %s", code, out)
		}
		var res struct {
			JobError units.JobError `json:"job_error"`
			Error    string         `json:"error"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatal(err)
		}
		je := res.JobError
		if je.Unit != "boom.service" || je.Op != "start" || je.Result != units.JobFailed {
			t.Errorf("job error %+v", je)
		}
		if !slices.ContainsFunc(je.Journal, func(l string) bool { return strings.HasSuffix(l, ": boom") }) {
			t.Errorf("journal lacks boom:\n%s", strings.Join(je.Journal, "\n"))
		}
		st := e.status("boom.service")
		if !st.Failed() || st.Result != "exit-code" || st.ExecMainStatus != 3 {
			t.Errorf("status %+v, want failed with exit code 3", st)
		}
	})

	t.Run("crash restarts", func(t *testing.T) {
		e := e2eHost{t, h}
		st := e.status("alpha.service")
		e.run("kill", "-KILL", fmt.Sprint(st.ExecMainPID))
		after := e.await("alpha.service", "restarted", func(s units.UnitStatus) bool {
			return s.Running() && s.ExecMainPID != st.ExecMainPID
		})
		if after.NRestarts != st.NRestarts+1 {
			t.Errorf("NRestarts %d → %d, want +1", st.NRestarts, after.NRestarts)
		}
	})

	t.Run("reapply unchanged", func(t *testing.T) {
		e := e2eHost{t, h}
		pids := map[string]uint32{}
		for _, n := range []string{"alpha.service", "beta.service"} {
			pids[n] = e.status(n).ExecMainPID
		}
		before := e.reloads()
		r := e.apply(alpha, beta)
		if diff := cmp.Diff(applyResult{}, r); diff != "" {
			t.Errorf("apply (-want +got):\n%s", diff)
		}
		if got := e.reloads(); got != before {
			t.Errorf("systemd reloaded: %q → %q", before, got)
		}
		for n, pid := range pids {
			if got := e.status(n).ExecMainPID; got != pid {
				t.Errorf("%s restarted: main PID %d → %d", n, pid, got)
			}
		}
	})

	t.Run("change one", func(t *testing.T) {
		e := e2eHost{t, h}
		alphaPID, betaPID := e.status("alpha.service").ExecMainPID, e.status("beta.service").ExecMainPID
		beta = sleeper("beta.service", "1000000")
		r := e.apply(alpha, beta)
		want := applyResult{
			Changes:   units.Changes{Written: []string{"beta.service"}, Reloaded: true},
			Restarted: []string{"beta.service"},
		}
		if diff := cmp.Diff(want, r); diff != "" {
			t.Errorf("apply (-want +got):\n%s", diff)
		}
		if got := e.status("alpha.service").ExecMainPID; got != alphaPID {
			t.Errorf("alpha restarted: %d → %d", alphaPID, got)
		}
		st := e.status("beta.service")
		if st.ExecMainPID == betaPID || !st.Running() {
			t.Errorf("beta not restarted: %+v", st)
		}
		if cmdline, _ := e.run("cat", fmt.Sprintf("/proc/%d/cmdline", st.ExecMainPID)); cmdline != "/bin/sleep\x001000000\x00" {
			t.Errorf("beta runs %q", cmdline)
		}
	})

	t.Run("exec escaping", func(t *testing.T) {
		e := e2eHost{t, h}
		args := []string{"plain", "a b", `q"x`, `it's`, `b\s`, `ends\`, "$HOME", "${HOME}", "100%", "%n", "#hash",
			";", "", "ü", "--x=$(id)", "`id`", "a;b"}
		echo := units.Spec{
			Name: "echo.service",
			Type: units.TypeExec,
			ExecStart: append([]string{"/bin/sh", "-c",
				`for a in "$@"; do printf '<%s>\n' "$a"; done; echo END`, "sh"}, args...),
		}
		e.apply(echo)
		e.ctl(nil, "start", "echo.service")
		e.await("echo.service", "finished", func(s units.UnitStatus) bool { return s.ActiveState == units.Inactive })
		var lines []string
		deadline := time.Now().Add(10 * time.Second)
		for {
			e.ctl(&lines, "journal", "echo.service", "100")
			if slices.ContainsFunc(lines, func(l string) bool { return strings.HasSuffix(l, ": END") }) || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		var got []string
		for _, l := range lines {
			if _, arg, ok := strings.Cut(l, "]: <"); ok {
				got = append(got, strings.TrimSuffix(arg, ">"))
			}
		}
		if diff := cmp.Diff(args, got); diff != "" {
			t.Errorf("arguments systemd passed (-want +got):\n%s\njournal:\n%s", diff, strings.Join(lines, "\n"))
		}
	})

	t.Run("watch", func(t *testing.T) {
		e := e2eHost{t, h}
		crash := units.Spec{Name: "crash.service", ExecStart: []string{"/bin/sh", "-c", "sleep 2; exit 1"}}
		e.apply(crash)
		var seen []units.UnitStatus
		e.ctl(&seen, "watch-start", "crash.service")
		if len(seen) < 2 || seen[0].ActiveState != units.Inactive || !seen[len(seen)-1].Failed() {
			t.Errorf("watch saw %+v, want inactive … failed", seen)
		}
	})

	t.Run("private socket", func(t *testing.T) {
		e := e2eHost{t, h}
		// With no system bus to reach, unitsctl (root) talks to systemd
		// over /run/systemd/private, jobs included.
		env := []string{"env", "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent"}
		pid := e.status("alpha.service").ExecMainPID
		if out, code := e.run(append(env, ctl, "restart", "alpha.service")...); code != 0 {
			t.Fatalf("restart over the private socket: exit %d: %s", code, out)
		}
		out, _ := e.run(append(env, ctl, "status", "alpha.service")...)
		var st units.UnitStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
		if !st.Running() || st.ExecMainPID == pid {
			t.Errorf("status over the private socket %+v, want a new running main process", st)
		}
	})

	t.Run("power cut", func(t *testing.T) {
		e := e2eHost{t, h}
		if err := h.Kill(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"alpha.service", "beta.service"} {
			e.await(n, "running after boot", units.UnitStatus.Running)
		}
		if st := e.status("boom.service"); st.ActiveState != units.Inactive {
			t.Errorf("boom.service (not enabled) after boot: %+v", st)
		}
	})

	t.Run("remove", func(t *testing.T) {
		e := e2eHost{t, h}
		names := []string{"alpha.service", "beta.service", "boom.service", "echo.service", "crash.service"}
		e.ctl(nil, append([]string{"remove"}, names...)...)
		for _, n := range names {
			if st := e.status(n); st.LoadState != "not-found" || st.ActiveState != units.Inactive {
				t.Errorf("%s after remove: %+v", n, st)
			}
			if out, _ := e.run("systemctl", "show", "-p", "LoadState", n); strings.TrimSpace(out) != "LoadState=not-found" {
				t.Errorf("systemctl show %s: %q", n, out)
			}
		}
		if out, _ := e.run("sh", "-c", "ls /etc/systemd/system/multi-user.target.wants/ /etc/systemd/system/"); strings.Contains(out, "alpha") {
			t.Errorf("files left:\n%s", out)
		}
		if out, _ := e.run("pgrep", "-x", "sleep"); out != "" {
			t.Errorf("sleep processes left: %s", out)
		}
	})
	_ = e
}
