package preflight

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"syscall"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodecheck"
)

// Failure is one check `ecom-agent join` failed, with the fix.
type Failure struct {
	Check   string `json:"check"`
	Problem string `json:"problem"`
	Fix     string `json:"fix"`
}

func (f Failure) String() string {
	return fmt.Sprintf("[%s] %s\n    fix: %s", f.Check, f.Problem, f.Fix)
}

// Preflight checks what a node needs before the agent starts, so that a
// node that cannot work fails at `join` with every reason at once, not
// later with half a cluster formed. ports is false on a node the agent
// already runs on (its own units hold them).
//
// Control-plane nodes: the Kubernetes programs exist, run and fit the
// skew policy; the ports of etcd, kube-apiserver, the controller manager,
// the scheduler, gossip, the agents' RPC endpoint and metrics are free.
// Every node: the kubelet's, kube-proxy's and containerd's programs
// exist; swap, kernel modules and cgroups suit the kubelet (nodecheck);
// the kubelet's and kube-proxy's ports, and a worker's API load
// balancer's, are free. The container runtime itself is checked over CRI
// by the daemon once it has started containerd, before the kubelet.
func Preflight(ctx context.Context, root *hostfs.Root, cfg *config.Config, ports bool) []Failure {
	var out []Failure
	if cfg.IsControlPlane() {
		if _, err := CheckBinaries(ctx, root, cfg); err != nil {
			out = append(out, Failure{Check: "binaries", Problem: err.Error(),
				Fix: "install the ecom-agent-kubernetes package (it carries the pinned versions), or point the binaries.* keys at them"})
		}
	}
	out = append(out, nodePreflight(root, cfg)...)
	if ports {
		notHere := false
		for _, p := range preflightPorts(cfg) {
			err := portFree(p.network, p.addr)
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				if !notHere {
					out = append(out, Failure{Check: "address",
						Problem: fmt.Sprintf("%s is not an address of this host", p.addr.Addr()),
						Fix:     "set advertise_address to one of this host's addresses (`ip -brief address` lists them), or leave it out to detect it"})
				}
				notHere = true
				continue
			}
			if err != nil {
				out = append(out, Failure{Check: "ports",
					Problem: fmt.Sprintf("%s %s (%s) is in use: %v", p.network, p.addr, p.what, err),
					Fix:     fmt.Sprintf("stop what listens there (`ss -lnp 'sport = :%d'` names it), or change %s", p.addr.Port(), p.key)})
			}
		}
	}
	return out
}

type preflightPort struct {
	network, what, key string
	addr               netip.AddrPort
}

func preflightPorts(cfg *config.Config) []preflightPort {
	adv := cfg.AdvertiseAddress
	any4 := netip.IPv4Unspecified()
	lo := netip.MustParseAddr("127.0.0.1")
	at := func(a netip.Addr, port int) netip.AddrPort { return netip.AddrPortFrom(a, uint16(port)) }
	ps := []preflightPort{
		{"tcp", "gossip", "gossip.port", at(adv, cfg.Gossip.Port)},
		{"udp", "gossip", "gossip.port", at(adv, cfg.Gossip.Port)},
		{"tcp", "the agents' RPC endpoint", "gossip.rpc_port", at(adv, cfg.Gossip.RPCPort)},
	}
	if cfg.IsControlPlane() {
		ps = append(ps,
			preflightPort{"tcp", "etcd clients", "etcd.client_port", at(adv, cfg.Etcd.ClientPort)},
			preflightPort{"tcp", "etcd clients on loopback", "etcd.client_port", at(lo, cfg.Etcd.ClientPort)},
			preflightPort{"tcp", "etcd peers", "etcd.peer_port", at(adv, cfg.Etcd.PeerPort)},
			preflightPort{"tcp", "kube-apiserver", "apiserver.port", at(any4, cfg.APIServer.Port)},
			preflightPort{"tcp", "kube-controller-manager's health and metrics", "(fixed: 10257)", at(lo, 10257)},
			preflightPort{"tcp", "kube-scheduler's health and metrics", "(fixed: 10259)", at(lo, 10259)},
		)
	}
	ps = append(ps,
		preflightPort{"tcp", "the kubelet", "(fixed: 10250)", at(any4, 10250)},
		preflightPort{"tcp", "the kubelet's health", "(fixed: 10248)", at(lo, 10248)},
		preflightPort{"tcp", "kube-proxy's health", "(fixed: 10256)", at(lo, 10256)},
	)
	if !cfg.IsControlPlane() {
		ps = append(ps, preflightPort{"tcp", "the API load balancer", "(fixed: 6444)", at(lo, bootstrap.APILoadBalancerPort)})
	}
	if a := cfg.Metrics.Address; a != "" {
		if host, port, err := net.SplitHostPort(a); err == nil {
			n, _ := strconv.Atoi(port)
			addr := any4
			if host != "" {
				if h, err := netip.ParseAddr(host); err == nil {
					addr = h
				}
			}
			ps = append(ps, preflightPort{"tcp", "the agent's metrics", "metrics.address", at(addr, n)})
		}
	}
	return ps
}

// portFree tries to listen where a component will.
func portFree(network string, addr netip.AddrPort) error {
	var lc net.ListenConfig
	switch network {
	case "udp":
		c, err := lc.ListenPacket(context.Background(), "udp", addr.String())
		if err != nil {
			return trimListenErr(err)
		}
		return c.Close()
	default:
		l, err := lc.Listen(context.Background(), "tcp", addr.String())
		if err != nil {
			return trimListenErr(err)
		}
		return l.Close()
	}
}

// trimListenErr drops the "listen tcp ADDR:" prefix the message repeats,
// keeping the errno for errors.Is.
func trimListenErr(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// nodePreflight checks what the kubelet needs that can be checked before
// the agent starts anything: its programs and containerd's exist, and the
// host's swap, kernel modules and cgroups (nodecheck's checks, the same
// messages the daemon shows).
func nodePreflight(root *hostfs.Root, cfg *config.Config) []Failure {
	var out []Failure
	bins := []struct{ name, key, path, pkg string }{
		{"kubelet", "binaries.kubelet", cfg.Binaries.Kubelet, "ecom-agent-kubernetes"},
		{"kube-proxy", "binaries.kube_proxy", cfg.Binaries.KubeProxy, "ecom-agent-kubernetes"},
	}
	if cfg.ManagesContainerd() {
		bins = append(bins,
			struct{ name, key, path, pkg string }{"containerd", "binaries.containerd", cfg.Binaries.Containerd, "ecom-agent-containerd"},
			struct{ name, key, path, pkg string }{"ctr", "binaries.ctr", cfg.Binaries.Ctr, "ecom-agent-containerd"})
	}
	for _, b := range bins {
		if cfg.IsControlPlane() && b.name == "kube-proxy" {
			continue // CheckBinaries covers it
		}
		if _, err := root.Stat(b.path); err != nil {
			out = append(out, Failure{Check: "binaries",
				Problem: fmt.Sprintf("%s not found at %s", b.name, b.path),
				Fix:     fmt.Sprintf("install the %s package, or set %s in the config to where it is", b.pkg, b.key)})
		}
	}
	o := nodecheck.Options{Root: root.Dir(), FailSwapOn: true, CgroupDriver: "systemd"}
	for _, f := range slices.Concat(nodecheck.Swap(o), nodecheck.Modules(o), nodecheck.Cgroups(o)) {
		out = append(out, Failure{Check: f.Check, Problem: f.Problem, Fix: f.Fix})
	}
	return out
}
