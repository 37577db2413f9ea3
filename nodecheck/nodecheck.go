// Package nodecheck is the preflight of a Kubernetes node: what kubelet
// 1.37 needs from the host, checked before the agent starts it, on
// control-plane nodes and workers alike (like kubeadm's preflight).
//
// Run runs every check and returns every failure at once; each check is
// also exported on its own. A Failure is one line with the fix. Host files
// are read under Options.Root ("" or "/" for the real host), so tests point
// it at a directory laid out like a host; ports are the exception, probed
// with Options.Listen.
package nodecheck

import (
	"context"
	"net"
	"path/filepath"
	"time"
)

// DefaultCRIEndpoint is containerd's CRI socket, as the kubelet names it.
const DefaultCRIEndpoint = "unix:///run/containerd/containerd.sock"

// DefaultTimeout bounds a check with I/O when Options.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Port is a TCP port a node component needs free.
type Port struct {
	Port  int
	Owner string // the component, for the message: "kubelet"
}

// Options says what to check and where.
type Options struct {
	// Root is the host's root directory: "" or "/" for the real host.
	Root string
	// CRIEndpoint is the kubelet's containerRuntimeEndpoint; its socket
	// path is resolved under Root. Default DefaultCRIEndpoint.
	CRIEndpoint string
	// FailSwapOn is the kubelet's failSwapOn (the agent sets it true).
	FailSwapOn bool
	// FailCgroupV1 is the kubelet's failCgroupV1 (true by default since
	// kubelet 1.35): a cgroup v1 host fails.
	FailCgroupV1 bool
	// CgroupDriver is the kubelet's cgroupDriver: "systemd" needs systemd
	// as init; "" skips that check.
	CgroupDriver string
	// Ports must be free on all addresses, e.g. {10250, "kubelet"},
	// {10256, "kube-proxy health"}, {6444, "API load balancer"}.
	Ports []Port
	// Timeout bounds each check with I/O (the CRI calls). Default
	// DefaultTimeout.
	Timeout time.Duration
	// Listen probes the ports; default net.Listen. Tests inject theirs.
	Listen func(network, addr string) (net.Listener, error)
}

// Failure is one failed check: what is wrong and how to fix it.
type Failure struct {
	Check   string `json:"check"`
	Problem string `json:"problem"`
	Fix     string `json:"fix"`
}

// Error returns "check: problem; fix: fix".
func (f Failure) Error() string {
	return f.Check + ": " + f.Problem + "; fix: " + f.Fix
}

// Report is what Run found.
type Report struct {
	// Failures, in the order of the checks: cri, swap, modules, sysctl,
	// cgroups, ports. Empty when the node is ready for the kubelet.
	Failures []Failure
	// Runtime is what the container runtime said about itself (version,
	// NetworkReady, cgroup driver); nil when it did not answer.
	Runtime *Runtime
}

// Run runs every check and returns all failures. It does not stop at the
// first one, so an operator fixes everything in one go.
func Run(ctx context.Context, o Options) Report {
	var r Report
	var crif []Failure
	r.Runtime, crif = CRI(ctx, o)
	r.Failures = append(r.Failures, crif...)
	r.Failures = append(r.Failures, Swap(o)...)
	r.Failures = append(r.Failures, Modules(o)...)
	r.Failures = append(r.Failures, Sysctls(o)...)
	r.Failures = append(r.Failures, Cgroups(o)...)
	r.Failures = append(r.Failures, Ports(o)...)
	return r
}

// path resolves a host path under the root.
func (o Options) path(logical string) string {
	root := o.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, filepath.Clean("/"+logical))
}

func (o Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

func fail(check, problem, fix string) []Failure {
	return []Failure{{Check: check, Problem: problem, Fix: fix}}
}
