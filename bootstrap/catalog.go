package bootstrap

import (
	"path"
	"slices"
	"strings"

	"github.com/ecom-platform/ecom-agent/config"
)

// UnitGroup is the part of the agent that starts a unit.
type UnitGroup int

// The groups, in start order.
const (
	// GroupEtcd is the local etcd member (control-plane nodes).
	GroupEtcd UnitGroup = iota + 1
	// GroupControlPlane are the units that start once etcd serves:
	// kube-apiserver, then its clients.
	GroupControlPlane
	// GroupNode are the kubelet's side: the container runtime, the
	// kubelet, and on workers kube-proxy.
	GroupNode
)

// unitEntry is one unit of the catalogue: the group that starts it on a
// control-plane node and on a worker (0: not run there).
type unitEntry struct {
	name         string
	controlPlane UnitGroup
	worker       UnitGroup
	// containerd is true for the runtime, which the agent runs only
	// when the operator does not (config.ManagesContainerd).
	containerd bool
}

// catalogue is every unit the agent runs, in start order. kube-proxy
// starts with the control plane on control-plane nodes (the only ones
// with certificates until workers join) and with the node side on
// workers. Everything that lists units (start, status, reset) reads it.
var catalogue = []unitEntry{
	{name: EtcdUnit, controlPlane: GroupEtcd},
	{name: APIServerUnit, controlPlane: GroupControlPlane},
	{name: ControllerManagerUnit, controlPlane: GroupControlPlane},
	{name: SchedulerUnit, controlPlane: GroupControlPlane},
	{name: KubeProxyUnit, controlPlane: GroupControlPlane, worker: GroupNode},
	{name: ContainerdUnit, controlPlane: GroupNode, worker: GroupNode, containerd: true},
	{name: KubeletUnit, controlPlane: GroupNode, worker: GroupNode},
}

// UnitsOf lists the units of group that this node runs, in start order.
func UnitsOf(cfg *config.Config, group UnitGroup) []string {
	var out []string
	for _, e := range catalogue {
		g := e.worker
		if cfg.IsControlPlane() {
			g = e.controlPlane
		}
		if g == group && (!e.containerd || cfg.ManagesContainerd()) {
			out = append(out, e.name)
		}
	}
	return out
}

// AllUnits lists every unit the agent may run on any node, in start
// order; reset stops them in the reverse order.
func AllUnits() []string {
	out := make([]string, len(catalogue))
	for i, e := range catalogue {
		out[i] = e.name
	}
	return out
}

// KubeProxyClientCert is a worker's kube-proxy identity (key and
// certificate in one PEM), referenced by its kubeconfig.
const KubeProxyClientCert = "/var/lib/kube-proxy/client.pem"

// GeneratedKubernetesEntries are the entries of KubernetesDir the agent
// writes; anything else there is an operator's.
var GeneratedKubernetesEntries = []string{
	"pki", "etcd", "encryption", "audit",
	"admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf",
	"kubelet.conf", "ecom-agent.conf", "kube-proxy.conf",
}

// GeneratedPaths are the paths outside KubernetesDir and AgentStateDir
// that the agent writes.
var GeneratedPaths = []string{
	EtcdDataDir,
	KubeProxyConfigFile, KubeletConfigFile, KubeletPKIDir,
	ContainerdConfigFile, CNIConfFile, KubeProxyClientCert,
}

// KeptStateEntries are the entries of AgentStateDir that are the
// operator's (image archives) and outlive a reset.
var KeptStateEntries = []string{"images"}

// IsGenerated reports whether the logical path p is one the agent
// generates (or lies under one): what reset removes. Unit files count
// when they are the catalogue's.
func IsGenerated(p string) bool {
	p = path.Clean(p)
	under := func(dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	for _, e := range GeneratedKubernetesEntries {
		if under(KubernetesDir + "/" + e) {
			return true
		}
	}
	for _, g := range GeneratedPaths {
		if under(g) {
			return true
		}
	}
	if under(AgentStateDir) {
		rest := strings.TrimPrefix(strings.TrimPrefix(p, AgentStateDir), "/")
		first, _, _ := strings.Cut(rest, "/")
		return rest != "" && !slices.Contains(KeptStateEntries, first)
	}
	if dir, name := path.Split(p); path.Clean(dir) == SystemdDir {
		return slices.Contains(AllUnits(), name)
	}
	return false
}
