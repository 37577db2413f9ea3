package testhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// launchScript runs on the machine, in the host's network namespace. It
// moves itself into the host's cgroup in every hierarchy, checks that it got
// there, and enters the host's own PID, mount, UTS, IPC and cgroup
// namespaces to run bootScript.
const launchScript = `set -eu
for f in $CGROUP_PROCS; do echo $$ >"$f"; done
while read -r line; do
	case "$line" in
	*:/$CGROUP) ;;
	*) echo "testhost: not in cgroup /$CGROUP: $line" >&2; exit 1 ;;
	esac
done </proc/self/cgroup
exec unshare --pid --mount --uts --ipc --cgroup --fork --propagation private /bin/sh -c "$BOOT"
`

// bootScript runs as PID 1 of the host's namespaces. It refuses any root but
// an overlay, mounts the kernel file systems a systemd needs, a minimal /dev
// (the machine's devices stay the machine's), pivots into the host's root
// and becomes systemd. %s are the cgroup mounts and the BeforeBoot hook.
const bootScript = `set -eu
if [ "$ROOT" = / ] || [ "$(findmnt -n -o FSTYPE --mountpoint "$ROOT")" != overlay ]; then
	echo "testhost: refusing to boot from $ROOT: not an overlay" >&2
	exit 1
fi
cd "$ROOT"
mount -t proc proc proc
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs sys
%s
mount -t tmpfs -o mode=755,nosuid dev dev
for n in null zero full random urandom tty kmsg net/tun fuse; do
	[ -e "/dev/$n" ] || continue
	mkdir -p "dev/$(dirname "$n")"
	touch "dev/$n"
	mount --bind "/dev/$n" "dev/$n"
done
mkdir dev/pts dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev shm dev/shm
ln -s pts/ptmx dev/ptmx
ln -s /proc/self/fd dev/fd
ln -s /proc/self/fd/0 dev/stdin
ln -s /proc/self/fd/1 dev/stdout
ln -s /proc/self/fd/2 dev/stderr
mkdir -p var/lib/containerd
mount --bind "$DATA/containerd" var/lib/containerd
hostname "$NAME"
# BeforeBoot hook:
%s
cd "$ROOT"
pivot_root . mnt
cd /
umount -l /mnt
exec env -i container=ecomtest /lib/systemd/systemd --system
`

// launch starts a host's systemd and returns a reference to it, PID 1 of the
// host as seen from the machine. It does not wait for the boot to finish.
func (h *Host) launch(ctx context.Context) (procRef, error) {
	e := h.env
	e.life.RLock()
	defer e.life.RUnlock()
	if e.isClosed() {
		return procRef{}, errors.New("environment closed")
	}
	ov := h.overlay()
	if err := ov.check(); err != nil {
		return procRef{}, err
	}
	hs, err := hierarchies()
	if err != nil {
		return procRef{}, err
	}
	rel := hostCgroup(e.id, h.name)
	err = withLock(ctx, globalLockPath(e.opts.StateDir), func() error { return createCgroup(hs, rel) })
	if err != nil {
		return procRef{}, err
	}
	cgroupMounts, err := cgroupMountScript(hs)
	if err != nil {
		return procRef{}, err
	}
	var procs []string
	for _, hier := range hs {
		procs = append(procs, filepath.Join(hier.Point, rel, "cgroup.procs"))
	}

	console, err := os.OpenFile(consoleLogPath(e.dir, h.name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return procRef{}, fmt.Errorf("launch: %w", err)
	}
	defer console.Close()
	fmt.Fprintf(console, "--- testhost: booting %s at %s\n", h.name, time.Now().Format(time.RFC3339))

	netns := filepath.Join(netnsRunDir, netnsName(e.id, h.name))
	cmd := exec.Command("nsenter", "--net="+netns, "--", "/bin/sh", "-c", launchScript)
	cmd.Env = []string{
		machinePath,
		"CGROUP_PROCS=" + strings.Join(procs, " "),
		"CGROUP=" + rel,
		"BOOT=" + fmt.Sprintf(bootScript, cgroupMounts, e.st.BeforeBoot),
		"ROOT=" + ov.root,
		"DATA=" + ov.data,
		"NAME=" + h.name,
	}
	cmd.Stdout, cmd.Stderr = console, console
	// Its own session: a Ctrl-C meant for the test must not reach the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return procRef{}, fmt.Errorf("launch: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }() // reaps the launcher when the host ends

	var init procRef
	err = poll(ctx, "systemd of "+h.name+" to start", 10*time.Second, 5*time.Millisecond, func() (bool, string, error) {
		select {
		case <-exited:
			return false, "", fmt.Errorf("launcher exited: %s", h.consoleTail())
		default:
		}
		pid, ok := innerInit(cmd.Process.Pid)
		if !ok {
			return false, "no PID 1 yet", nil
		}
		init, err = processRef(pid)
		return err == nil, "", err
	})
	if err != nil {
		cmd.Process.Kill()
		kctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		defer cancel()
		return procRef{}, errors.Join(fmt.Errorf("launch %s: %w", h.name, err), killCgroup(kctx, hs, rel))
	}
	return init, nil
}

// innerInit returns the child of the launcher (unshare) that is PID 1 of
// the new PID namespace.
func innerInit(launcher int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", launcher, launcher))
	if err != nil {
		return 0, false
	}
	for f := range strings.FieldsSeq(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(status), "\n") {
			if ns, ok := strings.CutPrefix(line, "NSpid:"); ok && strings.HasSuffix(strings.TrimSpace(ns), "\t1") {
				return pid, true
			}
		}
	}
	return 0, false
}

// awaitBoot waits until the host's systemd has finished booting and returns
// an error unless the system is "running": a failed unit makes it
// "degraded", and the error lists the failed units.
func (h *Host) awaitBoot(ctx context.Context) error {
	// The bound covers the blocking calls of systemctl too.
	ctx, cancel := context.WithTimeout(ctx, h.env.opts.BootTimeout)
	defer cancel()
	var state string
	err := poll(ctx, h.name+" to finish booting", h.env.opts.BootTimeout, 100*time.Millisecond, func() (bool, string, error) {
		if !h.Running() {
			return false, "", fmt.Errorf("systemd exited: %s", h.consoleTail())
		}
		// --wait blocks until startup is done, once systemd answers at all.
		res, _ := h.Run(ctx, "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(res.Stdout)
		switch state {
		case "running", "degraded", "maintenance", "stopping":
			return true, "", nil
		}
		return false, "state " + strings.TrimSpace(state+" "+res.Stderr), nil
	})
	if err != nil {
		return err
	}
	if state != "running" {
		failed, _ := h.Run(ctx, "systemctl", "--failed", "--no-legend", "--plain")
		return fmt.Errorf("%s booted %s; failed units:\n%s", h.name, state, failed.Stdout)
	}
	return nil
}

// consoleTail returns the last lines the host's launcher and systemd printed.
func (h *Host) consoleTail() string {
	b, _ := os.ReadFile(consoleLogPath(h.env.dir, h.name))
	return tail(string(b), 20)
}
