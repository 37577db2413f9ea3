package testhost

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// New makes a new environment for the test t and tears it down when t and
// its subtests finish, or when the test binary gets SIGINT or SIGTERM. It
// skips t unless run as root. Building the root file system on first use
// takes about a minute.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("testhost: needs root (network namespaces, mounts, cgroups): run as root, as `make e2e` does")
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), rootfsBuildTimeout+time.Minute)
	defer cancel()
	e, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := e.closeOnSignal()
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			e.logDiagnostics(t.Logf)
		}
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// Start makes a new environment for t, as New does, and boots n hosts in it.
func Start(t testing.TB, n int) []*Host {
	t.Helper()
	return New(t, Options{}).Start(t, n)
}

// Start boots n more hosts in parallel and returns them once all have
// booted. It ends t if any did not.
func (e *Env) Start(t testing.TB, n int) []*Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.BootTimeout+time.Minute)
	defer cancel()
	hosts, err := e.StartHosts(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	return hosts
}

// StartOn is Start with the hosts on segment seg.
func (e *Env) StartOn(t testing.TB, n int, seg Segment) []*Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.BootTimeout+time.Minute)
	defer cancel()
	hosts, err := e.StartHostsOn(ctx, n, seg)
	if err != nil {
		t.Fatal(err)
	}
	return hosts
}

// MustRun runs args on the host and returns its standard output without
// surrounding space. It ends t if the command fails.
func (h *Host) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := h.Run(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(res.Stdout)
}

// closeOnSignal closes the environment when the process gets SIGINT or
// SIGTERM, then lets the signal take its course; Go's testing package
// would otherwise exit without running t.Cleanup. The returned func stops
// watching.
func (e *Env) closeOnSignal() (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			e.Close()
			signal.Stop(sigs)
			// Other environments of the process get it in turn; the last
			// one's resend meets Go's default handling and ends the process.
			syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		case <-done:
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
		})
	}
}

// logDiagnostics logs what helps to understand a failed test: each running
// host's failed units and the end of its journal.
func (e *Env) logDiagnostics(logf func(string, ...any)) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range e.Hosts() {
		if !h.Running() {
			logf("testhost: %s is stopped; console:\n%s", h.name, h.consoleTail())
			continue
		}
		failed, _ := h.Run(ctx, "systemctl", "--failed", "--no-legend", "--plain")
		journal, _ := h.Run(ctx, "journalctl", "-b", "-n", "40", "--no-pager")
		logf("testhost: %s failed units:\n%s\njournal:\n%s", h.name, failed.Stdout, journal.Stdout)
	}
}
