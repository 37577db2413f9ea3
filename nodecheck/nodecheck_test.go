package nodecheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// host is a fake host tree in a temp dir.
type host struct {
	t    *testing.T
	root string
}

func newHost(t *testing.T) *host {
	return &host{t: t, root: t.TempDir()}
}

func (h *host) write(logical, content string) {
	h.t.Helper()
	p := filepath.Join(h.root, logical)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) mkdir(logical string) {
	h.t.Helper()
	if err := os.MkdirAll(filepath.Join(h.root, logical), 0o755); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) read(logical string) string {
	h.t.Helper()
	data, err := os.ReadFile(filepath.Join(h.root, logical))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(data)
}

// wantFailures asserts the failures' exact messages (Failure.Error).
func wantFailures(t *testing.T, got []Failure, want ...string) {
	t.Helper()
	var msgs []string
	for _, f := range got {
		msgs = append(msgs, f.Error())
	}
	if !slices.Equal(msgs, want) {
		t.Errorf("failures:\n got  %q\n want %q", msgs, want)
	}
}

const (
	v2Mountinfo = `22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
24 1 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
28 24 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
	// A v1 host that has lost cpu,cpuacct (and pids).
	v1MountinfoNoCPU = `24 1 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
25 24 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:3 - tmpfs tmpfs ro,mode=755
26 25 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:26 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:5 - cgroup cgroup rw,xattr,name=systemd
30 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,memory
31 25 0:30 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpuset
32 25 0:31 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,hugetlb
`
	v1MountsFull = `sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,name=systemd 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/cpuset cgroup rw,nosuid,nodev,noexec,relatime,cpuset 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0
`
)

// goodHost is a host the kubelet can run on (without the CRI socket).
func goodHost(t *testing.T) *host {
	h := newHost(t)
	h.write("proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
	h.mkdir("sys/module/br_netfilter")
	h.mkdir("sys/module/overlay")
	h.write("proc/sys/net/ipv4/ip_forward", "1\n")
	h.write("proc/sys/net/bridge/bridge-nf-call-iptables", "1\n")
	h.write("proc/sys/net/bridge/bridge-nf-call-ip6tables", "1\n")
	h.write("proc/self/mountinfo", v2Mountinfo)
	h.write("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
	h.mkdir("run/systemd/system")
	return h
}

func (h *host) opts() Options {
	return Options{Root: h.root, FailSwapOn: true, FailCgroupV1: true, CgroupDriver: "systemd"}
}

func TestGoodHostPasses(t *testing.T) {
	o := goodHost(t).opts()
	for name, check := range map[string]func(Options) []Failure{
		"swap": Swap, "modules": Modules, "sysctl": Sysctls, "cgroups": Cgroups, "ports": Ports,
	} {
		if got := check(o); len(got) != 0 {
			t.Errorf("%s on a good host: %v", name, got)
		}
	}
}

func TestSwap(t *testing.T) {
	h := goodHost(t)
	o := h.opts()
	if got := Swap(o); len(got) != 0 {
		t.Fatalf("swap off: %v", got)
	}
	h.write("proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"+
		"/dev/sda3                               partition\t2097148\t\t0\t\t-2\n"+
		"/swap\\040file                           file\t\t1048572\t\t0\t\t-3\n")
	wantFailures(t, Swap(o),
		"swap: swap is on (/dev/sda3, /swap file) and failSwapOn is true: the kubelet will not start; "+
			"fix: swapoff -a and remove swap from /etc/fstab, or set kubelet failSwapOn=false with memorySwap.swapBehavior")
	o.FailSwapOn = false
	if got := Swap(o); len(got) != 0 {
		t.Errorf("swap on with failSwapOn=false: %v", got)
	}
}

func TestModules(t *testing.T) {
	h := newHost(t)
	wantFailures(t, Modules(h.opts()),
		"modules: kernel modules not loaded: br_netfilter, overlay; "+
			"fix: modprobe -a br_netfilter overlay, and list them in /etc/modules-load.d/ecom-agent.conf to load them at boot")

	// overlay seen in /proc/modules, br_netfilter still missing.
	h.write("proc/modules", "overlay 196608 0 - Live 0x0000000000000000\nnf_conntrack 188416 0 - Live 0x0000000000000000\n")
	wantFailures(t, Modules(h.opts()),
		"modules: kernel module not loaded: br_netfilter; "+
			"fix: modprobe br_netfilter, and list it in /etc/modules-load.d/ecom-agent.conf to load it at boot")

	h.mkdir("sys/module/br_netfilter")
	wantFailures(t, Modules(h.opts()))
}

func TestSysctls(t *testing.T) {
	h := goodHost(t)
	h.write("proc/sys/net/ipv4/ip_forward", "0\n")
	wantFailures(t, Sysctls(h.opts()),
		"sysctl: net.ipv4.ip_forward is 0, must be 1; "+
			"fix: sysctl -w net.ipv4.ip_forward=1; ecom-agent keeps it in /etc/sysctl.d/90-ecom-agent.conf, so look for a later /etc/sysctl.d file or a firewall that resets it")

	if err := os.RemoveAll(filepath.Join(h.root, "proc/sys/net/ipv4")); err != nil {
		t.Fatal(err)
	}
	wantFailures(t, Sysctls(h.opts()),
		"sysctl: cannot read net.ipv4.ip_forward: no such file or directory; fix: run ecom-agent as root on a kernel with IPv4 forwarding")

	if err := os.RemoveAll(filepath.Join(h.root, "proc/sys/net/bridge")); err != nil {
		t.Fatal(err)
	}
	h.write("proc/sys/net/ipv4/ip_forward", "1\n")
	wantFailures(t, Sysctls(h.opts()),
		"sysctl: net.bridge.bridge-nf-call-iptables does not exist: the br_netfilter module is not loaded; "+
			"fix: modprobe br_netfilter, and list it in /etc/modules-load.d/ecom-agent.conf to load it at boot")
}

func TestCgroupsV2(t *testing.T) {
	h := goodHost(t)
	wantFailures(t, Cgroups(h.opts()))

	h.write("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io pids\n")
	wantFailures(t, Cgroups(h.opts()),
		"cgroups: cgroup v2 controllers not available: memory; "+
			"fix: enable them on the kernel command line (e.g. cgroup_enable=memory) and reboot")
}

func TestCgroupsV1(t *testing.T) {
	h := goodHost(t)
	h.write("proc/self/mountinfo", v1MountinfoNoCPU)
	o := h.opts()
	o.FailCgroupV1 = false
	missing := "cgroups: cgroup v1 controllers not mounted: cpu, cpuacct, pids (the kubelet stops with \"Cgroup subsystem not mounted\"); " +
		"fix: mount them under /sys/fs/cgroup (systemd does at boot; check the kernel command line for cgroup_disable=), or boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)"
	wantFailures(t, Cgroups(o), missing)

	// kubelet 1.37's default failCgroupV1 refuses any v1 host.
	o.FailCgroupV1 = true
	wantFailures(t, Cgroups(o),
		"cgroups: the host uses cgroup v1, which kubelet 1.37 refuses (failCgroupV1); "+
			"fix: boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1 on the kernel command line), or set kubelet failCgroupV1=false",
		missing)

	// A complete v1 layout, read from /proc/mounts.
	if err := os.Remove(filepath.Join(h.root, "proc/self/mountinfo")); err != nil {
		t.Fatal(err)
	}
	h.write("proc/mounts", v1MountsFull)
	o.FailCgroupV1 = false
	wantFailures(t, Cgroups(o))
}

func TestCgroupsNoMounts(t *testing.T) {
	h := goodHost(t)
	if err := os.Remove(filepath.Join(h.root, "proc/self/mountinfo")); err != nil {
		t.Fatal(err)
	}
	wantFailures(t, Cgroups(h.opts()),
		"cgroups: cannot read the mount table (/proc/self/mountinfo): no such file or directory; fix: run ecom-agent as root with /proc mounted")

	h.write("proc/self/mountinfo", "24 1 0:23 / /sys rw - sysfs sysfs rw\n")
	wantFailures(t, Cgroups(h.opts()),
		"cgroups: no cgroup filesystem is mounted at /sys/fs/cgroup; "+
			"fix: boot with systemd (it mounts cgroup v2 there), or `mount -t cgroup2 none /sys/fs/cgroup`")
}

func TestCgroupDriverNeedsSystemd(t *testing.T) {
	h := goodHost(t)
	if err := os.RemoveAll(filepath.Join(h.root, "run/systemd")); err != nil {
		t.Fatal(err)
	}
	o := h.opts()
	wantFailures(t, Cgroups(o),
		"cgroups: cgroupDriver is systemd but systemd is not the init system (no /run/systemd/system); "+
			"fix: boot with systemd, or set cgroupDriver: cgroupfs (and SystemdCgroup = false in containerd's runc options)")
	o.CgroupDriver = "cgroupfs"
	wantFailures(t, Cgroups(o))
	o.CgroupDriver = "cgroupd"
	wantFailures(t, Cgroups(o), `cgroups: cgroupDriver "cgroupd" is neither systemd nor cgroupfs; fix: set cgroupDriver: systemd`)
}

// A port a real listener holds fails, naming its owner and how to find
// the process; the default Listen probes all addresses, so a listener on
// 127.0.0.1 alone is found.
func TestPortTaken(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	got := Ports(Options{Ports: []Port{{port, "kubelet"}}})
	wantFailures(t, got, fmt.Sprintf("ports: port %d (kubelet) is in use; fix: stop what listens there: `ss -ltnp 'sport = :%d'` names the process", port, port))
}

// Free ports pass; each is probed on all addresses; other listen errors
// and bad numbers have their own message.
func TestPortsInjected(t *testing.T) {
	var asked []string
	listen := func(network, addr string) (net.Listener, error) {
		asked = append(asked, network+" "+addr)
		if addr == ":80" {
			return nil, &net.OpError{Op: "listen", Net: network, Err: os.NewSyscallError("bind", syscall.EACCES)}
		}
		return net.Listen("tcp", "127.0.0.1:0")
	}
	o := Options{Listen: listen, Ports: []Port{{10250, "kubelet"}, {10256, "kube-proxy health"}, {6444, "API load balancer"}}}
	wantFailures(t, Ports(o))
	if want := []string{"tcp :10250", "tcp :10256", "tcp :6444"}; !slices.Equal(asked, want) {
		t.Errorf("probed %q, want %q", asked, want)
	}

	o.Ports = []Port{{80, "ingress"}, {70000, "typo"}}
	wantFailures(t, Ports(o),
		"ports: port 80 (ingress) cannot be listened on: bind: permission denied; fix: run ecom-agent as root; if something holds it, `ss -ltnp 'sport = :80'` names the process",
		"ports: port 70000 (typo) is not a port; fix: use 1-65535")
}

func TestClockSkew(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	peers := map[string]time.Time{
		"cp-2":     now.Add(5 * time.Minute),
		"cp-1":     now.Add(-2*time.Second - 300*time.Millisecond),
		"worker-7": now.Add(900 * time.Millisecond), // within max
	}
	wantFailures(t, ClockSkew(now, peers, time.Second),
		"clock: cp-1's clock is 2s behind this node's (max 1s): certificates one issues are not yet valid on the other; "+
			"fix: keep every node's clock in sync: `apt install chrony`, or `timedatectl set-ntp true` (systemd-timesyncd), here and on cp-1",
		"clock: cp-2's clock is 5m0s ahead of this node's (max 1s): certificates one issues are not yet valid on the other; "+
			"fix: keep every node's clock in sync: `apt install chrony`, or `timedatectl set-ntp true` (systemd-timesyncd), here and on cp-2")
	wantFailures(t, ClockSkew(now, peers, 10*time.Minute))
	wantFailures(t, ClockSkew(now, nil, time.Second))
}

func TestEnsureSysctls(t *testing.T) {
	h := newHost(t)
	h.write("proc/sys/net/ipv4/ip_forward", "0\n")
	h.write("proc/sys/net/bridge/bridge-nf-call-iptables", "0\n")
	h.write("proc/sys/net/bridge/bridge-nf-call-ip6tables", "1\n")

	changed, err := EnsureSysctls(h.root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{SysctlFile, "net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"}; !slices.Equal(changed, want) {
		t.Errorf("first call changed %q, want %q", changed, want)
	}
	conf := h.read(SysctlFile)
	for _, line := range []string{"net.ipv4.ip_forward = 1\n", "net.bridge.bridge-nf-call-iptables = 1\n", "net.bridge.bridge-nf-call-ip6tables = 1\n"} {
		if !strings.Contains(conf, line) {
			t.Errorf("%s lacks %q:\n%s", SysctlFile, line, conf)
		}
	}
	for _, f := range []string{"proc/sys/net/ipv4/ip_forward", "proc/sys/net/bridge/bridge-nf-call-iptables"} {
		if got := h.read(f); got != "1\n" {
			t.Errorf("%s = %q, want 1", f, got)
		}
	}
	fi, err := os.Stat(filepath.Join(h.root, SysctlFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("%s mode %v", SysctlFile, fi.Mode().Perm())
	}
	wantFailures(t, Sysctls(Options{Root: h.root}))

	changed, err = EnsureSysctls(h.root)
	if err != nil || len(changed) != 0 {
		t.Errorf("second call: changed %q, err %v", changed, err)
	}
	fi2, err := os.Stat(filepath.Join(h.root, SysctlFile))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fi, fi2) || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Error("second call rewrote the file")
	}
}

func TestEnsureSysctlsWithoutBrNetfilter(t *testing.T) {
	h := newHost(t)
	h.write("proc/sys/net/ipv4/ip_forward", "0\n")
	changed, err := EnsureSysctls(h.root)
	var f Failure
	if !errors.As(err, &f) {
		t.Fatalf("err %v, want a Failure", err)
	}
	if want := "sysctl: /proc/sys/net/bridge does not exist: the br_netfilter module is not loaded, so net.bridge.bridge-nf-call-iptables cannot be set; " +
		"fix: modprobe br_netfilter, and list it in /etc/modules-load.d/ecom-agent.conf to load it at boot"; err.Error() != want {
		t.Errorf("err:\n got  %q\n want %q", err, want)
	}
	// What can be set is set all the same.
	if want := []string{SysctlFile, "net.ipv4.ip_forward"}; !slices.Equal(changed, want) {
		t.Errorf("changed %q, want %q", changed, want)
	}
	if got := h.read("proc/sys/net/ipv4/ip_forward"); got != "1\n" {
		t.Errorf("ip_forward = %q", got)
	}
}

// Run reports every failure at once, in check order.
func TestRunReportsEverything(t *testing.T) {
	h := newHost(t) // nothing: no socket, no modules, no sysctls, no mounts
	h.write("proc/swaps", "Filename Type Size Used Priority\n/dev/vda2 partition 1024 0 -2\n")
	h.write("proc/self/mountinfo", v2Mountinfo)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	o := h.opts()
	o.Ports = []Port{{busy.Addr().(*net.TCPAddr).Port, "kubelet"}}
	r := Run(context.Background(), o)
	var checks []string
	for _, f := range r.Failures {
		checks = append(checks, f.Check)
	}
	if want := []string{"cri", "swap", "modules", "sysctl", "sysctl", "cgroups", "ports"}; !slices.Equal(checks, want) {
		t.Errorf("checks failed %q, want %q:\n%v", checks, want, r.Failures)
	}
	if r.Runtime != nil {
		t.Errorf("runtime %v without a socket", r.Runtime)
	}
}
