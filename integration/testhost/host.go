package testhost

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// hostEnv returns the environment of commands run on a host.
func hostEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}
}

const (
	// stopTimeout bounds a graceful power off before Stop kills the host.
	stopTimeout = 90 * time.Second
	// killTimeout bounds waiting for a killed host's processes to be gone.
	killTimeout = 30 * time.Second
)

// Host is one test host: a Debian system with systemd as PID 1, its own
// network namespace, address, hostname and disk.
//
// A Host's methods are safe to call from several goroutines, but starting
// and stopping one host concurrently is not meaningful.
type Host struct {
	env   *Env
	st    *hostState // guarded by env.mu
	name  string
	index int
	addr  netip.Addr
}

// Name returns the host's name, which is also its hostname.
func (h *Host) Name() string { return h.name }

// Addr returns the host's address on the environment's network.
func (h *Host) Addr() netip.Addr { return h.addr }

// Gateway returns the machine's address on the host's network, its
// default route: what a test may name as the hosts' upstream DNS server
// (nothing answers there, and the traffic stays on the machine).
func (h *Host) Gateway() netip.Addr { return h.env.Gateway() }

// Env returns the environment the host belongs to.
func (h *Host) Env() *Env { return h.env }

// Root returns the directory on the machine where the host's root file
// system is mounted. File systems mounted inside the host (/run, /proc, ...)
// are not visible there; WriteFile and ReadFile see the host as it does.
func (h *Host) Root() string { return h.overlay().root }

func (h *Host) overlay() overlay { return hostOverlay(h.env.st.Rootfs, hostDir(h.env.dir, h.name)) }

// init returns the host's systemd, or nil when the host is stopped.
func (h *Host) init() *procRef {
	h.env.mu.Lock()
	defer h.env.mu.Unlock()
	if h.st.Init == nil {
		return nil
	}
	p := *h.st.Init
	return &p
}

// update changes the host's recorded state and saves it.
func (h *Host) update(change func(s *hostState)) error {
	h.env.mu.Lock()
	defer h.env.mu.Unlock()
	change(h.st)
	return saveState(h.env.dir, h.env.st)
}

// Running reports whether the host's systemd runs.
func (h *Host) Running() bool { return h.init().alive() }

// PID returns the PID, as seen from the machine, of the host's systemd, or 0
// when the host is stopped.
func (h *Host) PID() int {
	if p := h.init(); p.alive() {
		return p.PID
	}
	return 0
}

// pid1 returns the PID of the host's systemd for entering its namespaces,
// after checking that it still names that systemd: entering the namespaces
// of an unrelated process would run commands on the machine itself.
func (h *Host) pid1() (int, error) {
	p := h.init()
	if !p.alive() {
		return 0, fmt.Errorf("%s is not running", h.name)
	}
	mine, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return 0, fmt.Errorf("%s: %w", h.name, err)
	}
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", p.PID))
	if err != nil {
		return 0, fmt.Errorf("%s is not running: %w", h.name, err)
	}
	if mine == theirs {
		return 0, fmt.Errorf("%s: PID %d has no mount namespace of its own", h.name, p.PID)
	}
	return p.PID, nil
}

// Command returns a command that runs args on the host, in all its
// namespaces and at its root, for callers that stream its input and output.
func (h *Host) Command(ctx context.Context, args ...string) (*exec.Cmd, error) {
	if len(args) == 0 {
		return nil, errors.New("command: no arguments")
	}
	pid, err := h.pid1()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(pid), "-a", "-r", "-w", "--"}, args...)...)
	cmd.Env = hostEnv()
	cmd.WaitDelay = 5 * time.Second
	return cmd, nil
}

// Run runs args on the host and returns what it printed. The error is
// non-nil if the command could not run or exited with a status other than
// zero; it then carries the exit status and standard error.
func (h *Host) Run(ctx context.Context, args ...string) (Result, error) {
	cmd, err := h.Command(ctx, args...)
	if err != nil {
		return Result{ExitCode: -1}, err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: exitCode(err)}
	if err == nil {
		res.ExitCode = 0
		return res, nil
	}
	return res, fmt.Errorf("%s: %s: %w: %s", h.name, strings.Join(args, " "), err, strings.TrimSpace(res.Stderr))
}

// Start boots the stopped host and waits, at most Options.BootTimeout, until
// systemd reports the system "running".
func (h *Host) Start(ctx context.Context) error {
	if h.Running() {
		return fmt.Errorf("start %s: already running", h.name)
	}
	start := time.Now()
	if err := setLink(ctx, h.env.id, h.index, h.Connected()); err != nil {
		return fmt.Errorf("start %s: %w", h.name, err)
	}
	init, err := h.launch(ctx)
	if err != nil {
		return errors.Join(fmt.Errorf("start %s: %w", h.name, err), setLink(ctx, h.env.id, h.index, false))
	}
	if err := h.update(func(s *hostState) { s.Init = &init }); err != nil {
		return fmt.Errorf("start %s: %w", h.name, err)
	}
	if err := h.awaitBoot(ctx); err != nil {
		return fmt.Errorf("start %s: %w", h.name, err)
	}
	h.env.opts.Logf("testhost: %s (%s) booted in %v", h.name, h.addr, time.Since(start).Round(time.Millisecond))
	return nil
}

// Kill stops the host at once, as a power cut would: it kills its systemd
// and every process of the host. What the host wrote to its disk stays
// (the machine's page cache survives, unlike a real power cut's).
func (h *Host) Kill() error {
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	if p := h.init(); p.alive() {
		unix.Kill(p.PID, unix.SIGKILL)
	}
	if err := h.reap(ctx); err != nil {
		return fmt.Errorf("kill %s: %w", h.name, err)
	}
	return nil
}

// reap waits for the host's systemd to be gone, kills what is left of the
// host's processes, and records the host as stopped. The launcher reaps
// systemd at once, which is why the rest is killed only after: killed
// first, the launcher would leave systemd's exit to the machine's init.
func (h *Host) reap(ctx context.Context) error {
	p := h.init()
	err := poll(ctx, "systemd of "+h.name+" to exit", killTimeout, 5*time.Millisecond, func() (bool, string, error) {
		return !p.alive(), "", nil
	})
	if err != nil {
		return err
	}
	hs, err := hierarchies()
	if err != nil {
		return err
	}
	if err := killCgroup(ctx, hs, hostCgroup(h.env.id, h.name)); err != nil {
		return err
	}
	// The kernel would go on answering for the host's network namespace:
	// a stopped host is off the network.
	if err := setLink(ctx, h.env.id, h.index, false); err != nil {
		return err
	}
	return h.update(func(s *hostState) { s.Init = nil })
}

// Stop powers the host off gracefully and waits for it, at most until ctx
// ends or 90 seconds pass; then it kills what is left, as Kill does.
func (h *Host) Stop(ctx context.Context) error {
	if p := h.init(); p.alive() {
		h.Run(ctx, "systemctl", "--no-block", "poweroff") // its connection may drop
		err := poll(ctx, h.name+" to power off", stopTimeout, 20*time.Millisecond, func() (bool, string, error) {
			return !p.alive(), "", nil
		})
		if err != nil {
			h.env.opts.Logf("testhost: %v; killing it", err)
		}
	}
	return h.Kill()
}

// Restart stops the host gracefully if it runs and boots it again with the
// same disk.
func (h *Host) Restart(ctx context.Context) error {
	if err := h.Stop(ctx); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return h.Start(ctx)
}

// Connected reports whether the host is connected to the network while it
// runs, that is, not disconnected by Disconnect.
func (h *Host) Connected() bool {
	h.env.mu.Lock()
	defer h.env.mu.Unlock()
	return !h.st.Disconnected
}

// Disconnect cuts the host off the network, as pulling its cable would:
// its eth0 keeps its address, but nothing reaches it or leaves it. It lasts
// across restarts until Reconnect.
func (h *Host) Disconnect() error { return h.setConnected(false) }

// Reconnect undoes Disconnect.
func (h *Host) Reconnect() error { return h.setConnected(true) }

func (h *Host) setConnected(up bool) error {
	if err := h.update(func(s *hostState) { s.Disconnected = !up }); err != nil {
		return fmt.Errorf("%s: %w", h.name, err)
	}
	if !h.Running() {
		return nil // a stopped host is off the network; Start connects it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := setLink(ctx, h.env.id, h.index, up); err != nil {
		return fmt.Errorf("%s: %w", h.name, err)
	}
	return nil
}

// Wipe gives the stopped host a fresh disk, as reinstalling it would: what
// it wrote is gone; its name, address and network stay, and it gets a new
// machine ID.
func (h *Host) Wipe() error {
	if h.Running() {
		return fmt.Errorf("wipe %s: host is running; stop it first", h.name)
	}
	ov := h.overlay()
	if err := ov.unmount(); err != nil {
		return fmt.Errorf("wipe %s: %w", h.name, err)
	}
	if err := ov.wipe(); err != nil {
		return fmt.Errorf("wipe %s: %w", h.name, err)
	}
	if err := ov.mount(); err != nil {
		return fmt.Errorf("wipe %s: %w", h.name, err)
	}
	if err := h.writeIdentity(); err != nil {
		return fmt.Errorf("wipe %s: %w", h.name, err)
	}
	return nil
}

// writeIdentity writes what makes the host itself on its disk: its
// hostname, a machine ID of its own and /etc/hosts.
func (h *Host) writeIdentity() error {
	id := make([]byte, 16)
	rand.Read(id)
	files := []struct {
		path string
		data []byte
	}{
		{"/etc/hostname", []byte(h.name + "\n")},
		{"/etc/machine-id", []byte(hex.EncodeToString(id) + "\n")},
		{"/etc/hosts", h.env.hostsFile()},
	}
	for _, f := range files {
		if err := h.writeDisk(f.path, bytes.NewReader(f.data), 0o644); err != nil {
			return fmt.Errorf("write identity: %w", err)
		}
	}
	return nil
}
