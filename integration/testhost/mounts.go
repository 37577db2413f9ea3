package testhost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// mount is one line of /proc/self/mountinfo.
type mount struct {
	Point     string
	FSType    string
	Source    string
	SuperOpts string
}

// mounts lists the mounts of this process's mount namespace.
func mounts() ([]mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var ms []mount
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		// ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 {
			return nil, fmt.Errorf("parse mountinfo line %q", line)
		}
		ms = append(ms, mount{Point: unescapeMount(f[4]), FSType: g[0], Source: g[1], SuperOpts: g[2]})
	}
	return ms, nil
}

// unescapeMount undoes the octal escapes (\040 for space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountsUnder returns the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	ms, err := mounts()
	if err != nil {
		return nil, err
	}
	var points []string
	for _, m := range ms {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") {
			points = append(points, m.Point)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(points), nil
}

// unmountUnder detaches every mount at or below dir.
func unmountUnder(dir string) error {
	points, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// removeTree deletes dir after detaching every mount below it, so that the
// removal can never reach into a file system mounted there.
func removeTree(dir string) error {
	if err := unmountUnder(dir); err != nil {
		return err
	}
	left, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("remove %s: still mounted: %v", dir, left)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// overlay is a host's copy-on-write root: the cached root file system below,
// the host's own disk (upper) above, both seen at root. data is a second
// disk of the host, a plain directory of the machine's file system that
// the boot mounts at /var/lib/containerd: containerd's overlayfs snapshots
// cannot have their upper directories on an overlay, as on a real node
// whose /var/lib/containerd is an ordinary disk.
type overlay struct {
	lower, upper, work, root, data string
}

func hostOverlay(rootfs, hostDir string) overlay {
	return overlay{
		lower: rootfs,
		upper: filepath.Join(hostDir, "upper"),
		work:  filepath.Join(hostDir, "work"),
		root:  filepath.Join(hostDir, "root"),
		data:  filepath.Join(hostDir, "data"),
	}
}

// mount mounts the overlay at o.root, creating the directories it needs.
// It is a no-op if the overlay is mounted already.
func (o overlay) mount() error {
	if o.check() == nil {
		return nil
	}
	for _, d := range []string{o.upper, o.work, o.root, filepath.Join(o.data, "containerd")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mount overlay: %w", err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", o.lower, o.upper, o.work)
	if err := unix.Mount("overlay", o.root, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", o.root, err)
	}
	return nil
}

// unmount detaches the overlay and anything mounted below it.
func (o overlay) unmount() error {
	if err := unmountUnder(o.root); err != nil {
		return fmt.Errorf("unmount overlay: %w", err)
	}
	return nil
}

// wipe gives the overlay a fresh, empty disk. It must not be mounted.
func (o overlay) wipe() error {
	for _, d := range []string{o.upper, o.work, o.data} {
		if err := removeTree(d); err != nil {
			return fmt.Errorf("wipe: %w", err)
		}
	}
	return nil
}

// check returns an error unless o.root is an overlay mount of this host, the
// only root systemd may ever boot from. Booting systemd over the machine's
// own root would let its tmpfiles pass empty the machine's /tmp.
func (o overlay) check() error {
	root := filepath.Clean(o.root)
	if !filepath.IsAbs(root) || root == "/" {
		return fmt.Errorf("refusing root %q: not an absolute path below /", o.root)
	}
	if real, err := filepath.EvalSymlinks(root); err != nil || real != root {
		return fmt.Errorf("refusing root %q: it resolves to %q (%v)", o.root, real, err)
	}
	ms, err := mounts()
	if err != nil {
		return err
	}
	var top *mount // the last mount on a point is the visible one
	for i := range ms {
		if ms[i].Point == root {
			top = &ms[i]
		}
	}
	switch {
	case top == nil:
		return fmt.Errorf("refusing root %s: nothing is mounted there", root)
	case top.FSType != "overlay":
		return fmt.Errorf("refusing root %s: it is %s, not overlay", root, top.FSType)
	case !slices.Contains(strings.Split(top.SuperOpts, ","), "upperdir="+o.upper):
		return fmt.Errorf("refusing root %s: overlay is not this host's (%s)", root, top.SuperOpts)
	}
	return nil
}
