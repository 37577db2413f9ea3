package nodecheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// ModulesLoadFile is where the modules the kubelet needs are listed to be
// loaded at boot.
const ModulesLoadFile = "/etc/modules-load.d/ecom-agent.conf"

// Swap fails when swap is on and Options.FailSwapOn is set: the kubelet
// would not start. It reads /proc/swaps; a kernel without it has no swap.
func Swap(o Options) []Failure {
	if !o.FailSwapOn {
		return nil
	}
	data, err := os.ReadFile(o.path("/proc/swaps"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fail("swap", fmt.Sprintf("cannot read /proc/swaps: %v", errors.Unwrap(err)), "run ecom-agent as root")
	}
	var on []string
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) == 0 { // the header: Filename Type Size Used Priority
			continue
		}
		on = append(on, unescape(f[0]))
	}
	if len(on) == 0 {
		return nil
	}
	return fail("swap", fmt.Sprintf("swap is on (%s) and failSwapOn is true: the kubelet will not start", strings.Join(on, ", ")),
		"swapoff -a and remove swap from /etc/fstab, or set kubelet failSwapOn=false with memorySwap.swapBehavior")
}

// Modules fails when br_netfilter or overlay is not loaded: the first lets
// iptables see bridged pod traffic, the second is containerd's snapshotter.
// A module counts as loaded when /sys/module/NAME exists, /proc/modules
// lists it, or (built in) its trace is there: /proc/sys/net/bridge for
// br_netfilter, "overlay" in /proc/filesystems.
func Modules(o Options) []Failure {
	loaded := map[string]bool{}
	if data, err := os.ReadFile(o.path("/proc/modules")); err == nil {
		for line := range strings.Lines(string(data)) {
			if f := strings.Fields(line); len(f) > 0 {
				loaded[f[0]] = true
			}
		}
	}
	if data, err := os.ReadFile(o.path("/proc/filesystems")); err == nil {
		for line := range strings.Lines(string(data)) {
			if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "overlay" {
				loaded["overlay"] = true
			}
		}
	}
	if exists(o.path("/proc/sys/net/bridge")) {
		loaded["br_netfilter"] = true
	}
	var missing []string
	for _, m := range []string{"br_netfilter", "overlay"} {
		if !loaded[m] && !exists(o.path("/sys/module/"+m)) {
			missing = append(missing, m)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if len(missing) == 1 {
		return fail("modules", "kernel module not loaded: "+missing[0],
			fmt.Sprintf("modprobe %s, and list it in %s to load it at boot", missing[0], ModulesLoadFile))
	}
	return fail("modules", "kernel modules not loaded: "+strings.Join(missing, ", "),
		fmt.Sprintf("modprobe -a %s, and list them in %s to load them at boot", strings.Join(missing, " "), ModulesLoadFile))
}

// checkedSysctls are the sysctls Sysctls checks: routing between pods, and
// iptables (kube-proxy, network policies) seeing bridged traffic.
var checkedSysctls = []string{"net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"}

// Sysctls fails when net.ipv4.ip_forward or
// net.bridge.bridge-nf-call-iptables is not 1 (EnsureSysctls sets them;
// something that resets them afterwards shows here).
func Sysctls(o Options) []Failure {
	var out []Failure
	for _, key := range checkedSysctls {
		data, err := os.ReadFile(o.path(sysctlPath(key)))
		switch {
		case errors.Is(err, fs.ErrNotExist) && strings.HasPrefix(key, "net.bridge."):
			out = append(out, Failure{"sysctl", key + " does not exist: the br_netfilter module is not loaded",
				fmt.Sprintf("modprobe br_netfilter, and list it in %s to load it at boot", ModulesLoadFile)})
		case err != nil:
			out = append(out, Failure{"sysctl", fmt.Sprintf("cannot read %s: %v", key, errors.Unwrap(err)),
				"run ecom-agent as root on a kernel with IPv4 forwarding"})
		case strings.TrimSpace(string(data)) != "1":
			out = append(out, Failure{"sysctl", fmt.Sprintf("%s is %s, must be 1", key, strings.TrimSpace(string(data))),
				fmt.Sprintf("sysctl -w %s=1; ecom-agent keeps it in %s, so look for a later /etc/sysctl.d file or a firewall that resets it", key, SysctlFile)})
		}
	}
	return out
}

// sysctlPath is a sysctl's file: net.ipv4.ip_forward is
// /proc/sys/net/ipv4/ip_forward.
func sysctlPath(key string) string {
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
}

// Controllers the kubelet needs: on cgroup v1 it stops without cpu,
// cpuacct, cpuset or memory mounted, and limits pods' PIDs with pids; on
// cgroup v2 they must be available at the root (cgroup.controllers).
var (
	cgroupV1Controllers = []string{"cpu", "cpuacct", "cpuset", "memory", "pids"}
	cgroupV2Controllers = []string{"cpu", "memory", "pids"}
)

// Cgroups checks the cgroup hierarchy the kubelet runs on, from the mount
// table (/proc/self/mountinfo, else /proc/mounts): cgroup v2 at
// /sys/fs/cgroup with the cpu, memory and pids controllers, or (unless
// Options.FailCgroupV1) cgroup v1 with cpu, cpuacct, cpuset, memory and
// pids mounted. With Options.CgroupDriver "systemd", systemd must be init
// (/run/systemd/system exists).
func Cgroups(o Options) []Failure {
	const check = "cgroups"
	var out []Failure
	switch o.CgroupDriver {
	case "", "cgroupfs":
	case "systemd":
		if !exists(o.path("/run/systemd/system")) {
			out = append(out, Failure{check, "cgroupDriver is systemd but systemd is not the init system (no /run/systemd/system)",
				"boot with systemd, or set cgroupDriver: cgroupfs (and SystemdCgroup = false in containerd's runc options)"})
		}
	default:
		out = append(out, Failure{check, fmt.Sprintf("cgroupDriver %q is neither systemd nor cgroupfs", o.CgroupDriver),
			"set cgroupDriver: systemd"})
	}

	mounts, file, err := readMounts(o)
	if err != nil {
		return append(out, Failure{check, fmt.Sprintf("cannot read the mount table (%s): %v", file, err), "run ecom-agent as root with /proc mounted"})
	}
	v2, v1 := false, map[string]bool{}
	for _, m := range mounts {
		if m.point == "/sys/fs/cgroup" { // the last mount there is the one seen
			v2 = m.fstype == "cgroup2"
		}
		if m.fstype == "cgroup" {
			for _, opt := range m.opts {
				v1[opt] = true
			}
		}
	}
	if v2 {
		data, err := os.ReadFile(o.path("/sys/fs/cgroup/cgroup.controllers"))
		if err != nil {
			return out // cannot tell which controllers; the kubelet will say
		}
		have := strings.Fields(string(data))
		if missing := without(cgroupV2Controllers, have); len(missing) > 0 {
			out = append(out, Failure{check, "cgroup v2 controllers not available: " + strings.Join(missing, ", "),
				"enable them on the kernel command line (e.g. cgroup_enable=memory) and reboot"})
		}
		return out
	}
	if len(v1) == 0 {
		return append(out, Failure{check, "no cgroup filesystem is mounted at /sys/fs/cgroup",
			"boot with systemd (it mounts cgroup v2 there), or `mount -t cgroup2 none /sys/fs/cgroup`"})
	}
	if o.FailCgroupV1 {
		out = append(out, Failure{check, "the host uses cgroup v1, which kubelet 1.37 refuses (failCgroupV1)",
			"boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1 on the kernel command line), or set kubelet failCgroupV1=false"})
	}
	have := make([]string, 0, len(v1))
	for opt := range v1 {
		have = append(have, opt)
	}
	if missing := without(cgroupV1Controllers, have); len(missing) > 0 {
		out = append(out, Failure{check,
			fmt.Sprintf("cgroup v1 controllers not mounted: %s (the kubelet stops with \"Cgroup subsystem not mounted\")", strings.Join(missing, ", ")),
			"mount them under /sys/fs/cgroup (systemd does at boot; check the kernel command line for cgroup_disable=), or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)"})
	}
	return out
}

type mount struct {
	point, fstype string
	opts          []string // mount and superblock options: a v1 cgroup's controllers are there
}

// readMounts reads /proc/self/mountinfo, or /proc/mounts where it is not.
func readMounts(o Options) ([]mount, string, error) {
	data, err := os.ReadFile(o.path("/proc/self/mountinfo"))
	if err == nil {
		return parseMountinfo(data), "/proc/self/mountinfo", nil
	}
	data, err2 := os.ReadFile(o.path("/proc/mounts"))
	if err2 == nil {
		return parseMounts(data), "/proc/mounts", nil
	}
	return nil, "/proc/self/mountinfo", errors.Unwrap(err)
}

// parseMountinfo reads lines like
// "30 25 0:28 / /sys/fs/cgroup/memory rw,nosuid shared:14 - cgroup cgroup rw,memory".
func parseMountinfo(data []byte) []mount {
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		left, right, ok := strings.Cut(sc.Text(), " - ")
		l, r := strings.Fields(left), strings.Fields(right)
		if !ok || len(l) < 6 || len(r) < 3 {
			continue
		}
		opts := append(strings.Split(l[5], ","), strings.Split(r[2], ",")...)
		out = append(out, mount{point: unescape(l[4]), fstype: r[0], opts: opts})
	}
	return out
}

// parseMounts reads lines like
// "cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,memory 0 0".
func parseMounts(data []byte) []mount {
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		out = append(out, mount{point: unescape(f[1]), fstype: f[2], opts: strings.Split(f[3], ",")})
	}
	return out
}

// unescape undoes the kernel's octal escapes in mount and swap paths
// ("\040" is a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// without returns the names in want that are not in have, in want's order.
func without(want, have []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
