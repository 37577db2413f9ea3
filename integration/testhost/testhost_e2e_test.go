//go:build e2e

package testhost_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

func TestHosts(t *testing.T) {
	env := testhost.New(t, testhost.Options{
		BeforeBoot: `echo "$NAME $(findmnt -n -o FSTYPE sys/fs/cgroup/systemd)" >etc/ecomtest-before-boot`,
	})
	hosts := env.Start(t, 3)
	ctx := t.Context()

	t.Run("boot", func(t *testing.T) {
		var names []string
		for _, h := range hosts {
			if got := h.MustRun(t, "systemctl", "is-system-running"); got != "running" {
				t.Errorf("%s: is-system-running = %q, want running", h.Name(), got)
			}
			name := h.MustRun(t, "hostname")
			if name != h.Name() || slices.Contains(names, name) {
				t.Errorf("%s: hostname %q; others %v", h.Name(), name, names)
			}
			names = append(names, name)
			if got, err := h.ReadFile("/etc/ecomtest-before-boot"); string(got) != h.Name()+" cgroup\n" {
				t.Errorf("%s: BeforeBoot hook wrote %q (%v)", h.Name(), got, err)
			}
		}
	})

	t.Run("network", func(t *testing.T) {
		for _, from := range hosts {
			for _, to := range hosts {
				if from != to {
					from.MustRun(t, "ping", "-c1", "-W2", to.Addr().String())
					from.MustRun(t, "ping", "-c1", "-W2", to.Name()) // by /etc/hosts
				}
			}
		}
	})

	t.Run("files", func(t *testing.T) {
		h := hosts[0]
		if err := h.WriteFile("/etc/ecomtest/hello", []byte("hello\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		if got := h.MustRun(t, "stat", "-c", "%a %s", "/etc/ecomtest/hello"); got != "640 6" {
			t.Errorf("mode and size = %q, want 640 6", got)
		}
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		if err := h.CopyIn(self, "/usr/local/bin/copied", 0o755); err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(self)
		got, err := h.ReadFile("/usr/local/bin/copied")
		if err != nil || string(got) != string(want) {
			t.Errorf("ReadFile of copied binary: %d bytes (%v), want %d", len(got), err, len(want))
		}
		// /run is a tmpfs of the host, invisible from the machine.
		if err := h.WriteFile("/run/ecomtest/x", []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := h.MustRun(t, "cat", "/run/ecomtest/x"); got != "x" {
			t.Errorf("/run/ecomtest/x = %q", got)
		}
	})

	t.Run("kill and restart keep the disk", func(t *testing.T) {
		h := hosts[2]
		machineID := h.MustRun(t, "cat", "/etc/machine-id")
		if err := h.WriteFile("/var/lib/ecomtest/marker", []byte("before kill"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := h.WriteFile("/etc/systemd/system/ecomtest-sleeper.service", []byte(sleeperUnit), 0o644); err != nil {
			t.Fatal(err)
		}
		h.MustRun(t, "systemctl", "enable", "--now", "ecomtest-sleeper.service")

		if err := h.Kill(); err != nil {
			t.Fatal(err)
		}
		if h.Running() {
			t.Fatal("running after Kill")
		}
		if _, err := hosts[0].Run(ctx, "ping", "-c1", "-W1", h.Addr().String()); err == nil {
			t.Error("killed host answers ping")
		}
		if err := h.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := h.ReadFile("/var/lib/ecomtest/marker"); string(got) != "before kill" {
			t.Errorf("marker after restart = %q (%v)", got, err)
		}
		if got := h.MustRun(t, "systemctl", "is-active", "ecomtest-sleeper.service"); got != "active" {
			t.Errorf("enabled unit after restart: %s", got)
		}
		if got := h.MustRun(t, "cat", "/etc/machine-id"); got != machineID {
			t.Errorf("machine-id changed across restart: %s, was %s", got, machineID)
		}
		hosts[0].MustRun(t, "ping", "-c1", "-W2", h.Addr().String())
	})

	t.Run("graceful stop", func(t *testing.T) {
		h := hosts[1]
		start := time.Now()
		if err := h.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("stopped %s in %v", h.Name(), time.Since(start))
		if h.Running() {
			t.Fatal("running after Stop")
		}
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("disconnect and reconnect", func(t *testing.T) {
		from, h := hosts[0], hosts[1]
		if err := h.Disconnect(); err != nil {
			t.Fatal(err)
		}
		if _, err := from.Run(ctx, "ping", "-c1", "-W1", h.Addr().String()); err == nil {
			t.Error("disconnected host answers ping")
		}
		if _, err := h.Run(ctx, "ping", "-c1", "-W1", from.Addr().String()); err == nil {
			t.Error("disconnected host reaches another")
		}
		if err := h.Reconnect(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			_, err := from.Run(ctx, "ping", "-c1", "-W1", h.Addr().String())
			return err
		})
	})

	t.Run("wipe", func(t *testing.T) {
		h := hosts[2]
		machineID := h.MustRun(t, "cat", "/etc/machine-id")
		if err := h.Wipe(); err == nil {
			t.Fatal("Wipe of a running host succeeded")
		}
		if err := h.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := h.Wipe(); err != nil {
			t.Fatal(err)
		}
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := h.ReadFile("/var/lib/ecomtest/marker"); err == nil {
			t.Error("marker survived Wipe")
		}
		if res, _ := h.Run(ctx, "systemctl", "is-enabled", "ecomtest-sleeper.service"); res.ExitCode == 0 {
			t.Error("unit survived Wipe")
		}
		if got := h.MustRun(t, "cat", "/etc/machine-id"); got == machineID {
			t.Error("machine-id kept across Wipe")
		}
		if got := h.MustRun(t, "hostname"); got != h.Name() {
			t.Errorf("hostname after Wipe = %q", got)
		}
		hosts[0].MustRun(t, "ping", "-c1", "-W2", h.Addr().String())
	})

	t.Run("close leaves nothing", func(t *testing.T) {
		var pids []int
		for _, h := range hosts {
			pids = append(pids, h.PID())
		}
		if err := env.Close(); err != nil {
			t.Fatal(err)
		}
		if left := leftovers(t, env.ID(), env.Dir(), pids); len(left) > 0 {
			t.Errorf("left after Close:\n%s", strings.Join(left, "\n"))
		}
	})
}

const sleeperUnit = `[Unit]
Description=ecomtest sleeper

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
`

// TestSweepRemovesLeftoversOfCrashedOwner runs a test binary that starts a
// host and dies by SIGKILL, then checks that Sweep removes all it left.
func TestSweepRemovesLeftoversOfCrashedOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("testhost: needs root")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashingOwner$", "-test.v")
	cmd.Env = append(os.Environ(), "TESTHOST_CRASHING_OWNER=1")
	out, err := cmd.CombinedOutput()
	if status, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !status.Signaled() {
		t.Fatalf("crashing owner did not die by a signal (%v):\n%s", err, out)
	}
	var id, dir string
	var pid int
	for line := range strings.Lines(string(out)) {
		if _, err := fmt.Sscanf(line, "CRASHED env=%s dir=%s pid=%d", &id, &dir, &pid); err == nil {
			break
		}
	}
	if id == "" {
		t.Fatalf("crashing owner printed no environment:\n%s", out)
	}
	if left := leftovers(t, id, dir, []int{pid}); len(left) < 4 {
		t.Fatalf("crashed owner left only %v; want netns, links, mounts, cgroups and processes", left)
	}

	if err := testhost.Sweep(t.Context(), testhost.Options{Logf: t.Logf}); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, id, dir, []int{pid}); len(left) > 0 {
		t.Errorf("left after Sweep:\n%s", strings.Join(left, "\n"))
	}
}

// TestCrashingOwner is the crashing owner of the test above: it starts a
// host, then kills itself.
func TestCrashingOwner(t *testing.T) {
	if os.Getenv("TESTHOST_CRASHING_OWNER") != "1" {
		t.Skip("run by TestSweepRemovesLeftoversOfCrashedOwner")
	}
	env, err := testhost.Open(t.Context(), testhost.Options{Prefix: "crash", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := env.StartHosts(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("CRASHED env=%s dir=%s pid=%d\n", env.ID(), env.Dir(), hosts[0].PID())
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// leftovers lists what of environment id remains on the machine: network
// namespaces, links, mounts, cgroups, files and the given processes.
func leftovers(t *testing.T, id, dir string, pids []int) []string {
	t.Helper()
	var left []string
	nss, _ := os.ReadDir("/run/netns")
	for _, ns := range nss {
		if strings.HasPrefix(ns.Name(), "ecomtest-"+id+"-") {
			left = append(left, "netns "+ns.Name())
		}
	}
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatalf("ip link: %v", err)
	}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], "ect"+id) {
			left = append(left, "link "+strings.TrimSuffix(f[1], ":"))
		}
	}
	mounts, err := os.Open("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	defer mounts.Close()
	for s := bufio.NewScanner(mounts); s.Scan(); {
		if f := strings.Fields(s.Text()); len(f) > 2 && (f[2] == "overlay" || strings.HasPrefix(f[1], dir)) && strings.Contains(s.Text(), dir) {
			left = append(left, "mount "+f[1])
		}
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/ecomtest/" + id)
	for _, cg := range cgs {
		left = append(left, "cgroup "+cg)
	}
	if _, err := os.Stat(dir); err == nil {
		left = append(left, "dir "+dir)
	}
	for _, pid := range pids {
		if pid == 0 {
			continue
		}
		if comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); err == nil {
			left = append(left, fmt.Sprintf("process %d %s", pid, strings.TrimSpace(string(comm))))
		}
	}
	return left
}

// eventually calls f until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("after %v: %v", timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
