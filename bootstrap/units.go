package bootstrap

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/units"
)

const docsURL = "https://github.com/ecom-platform/ecom-agent#readme"

// Unit names of the components the agent runs.
const (
	EtcdUnit              = "etcd.service"
	APIServerUnit         = "kube-apiserver.service"
	ControllerManagerUnit = "kube-controller-manager.service"
	SchedulerUnit         = "kube-scheduler.service"
	KubeletUnit           = "kubelet.service"
	KubeProxyUnit         = "kube-proxy.service"
	AgentUnit             = "ecom-agent.service"
)

// ComponentUnits returns the systemd units this node runs, in start order.
// etcdServers is what kube-apiserver connects to, the local member first.
func ComponentUnits(cfg *config.Config, etcdServers []string) []units.Spec {
	var specs []units.Spec
	if cfg.IsControlPlane() {
		specs = append(specs,
			EtcdUnitSpec(cfg),
			componentSpec(APIServerUnit, "Kubernetes API server", cfg.Binaries.KubeAPIServer, APIServerFlags(cfg, etcdServers), units.TypeNotify),
			componentSpec(ControllerManagerUnit, "Kubernetes controller manager", cfg.Binaries.KubeControllerManager, ControllerManagerFlags(cfg), units.TypeSimple),
			componentSpec(SchedulerUnit, "Kubernetes scheduler", cfg.Binaries.KubeScheduler, SchedulerFlags(cfg), units.TypeSimple),
		)
		// The API server needs its etcd; ordering after the local member
		// keeps boot logs readable without making etcd a hard requirement
		// (the API server also reaches the other members).
		specs[1].After = append(specs[1].After, EtcdUnit)
	}
	specs = append(specs, componentSpec(KubeProxyUnit, "Kubernetes network proxy", cfg.Binaries.KubeProxy, KubeProxyFlags(), units.TypeSimple))
	if cfg.ManagesContainerd() {
		specs = append(specs, ContainerdUnitSpec(cfg))
	}
	specs = append(specs, KubeletUnitSpec(cfg))
	return specs
}

// UnitInputs lists the files a unit reads at start, so a change to any of
// them restarts that unit and no other.
func UnitInputs(unit string) []string {
	switch unit {
	case EtcdUnit:
		return []string{
			EtcdConfigFile,
			pkiPath("etcd/ca.crt"),
			pkiPath("etcd/server.crt"), pkiPath("etcd/server.key"),
			pkiPath("etcd/peer.crt"), pkiPath("etcd/peer.key"),
		}
	case APIServerUnit:
		return []string{
			EncryptionConfigFile, AuditPolicyFile,
			pkiPath("ca.crt"), pkiPath("apiserver.crt"), pkiPath("apiserver.key"),
			pkiPath("apiserver-kubelet-client.crt"), pkiPath("apiserver-kubelet-client.key"),
			pkiPath("apiserver-etcd-client.crt"), pkiPath("apiserver-etcd-client.key"),
			pkiPath("etcd/ca.crt"), pkiPath("front-proxy-ca.crt"),
			pkiPath("front-proxy-client.crt"), pkiPath("front-proxy-client.key"),
			pkiPath("sa.pub"), pkiPath("sa.key"),
		}
	case ControllerManagerUnit:
		return []string{ControllerManagerKubeconfig, pkiPath("ca.crt"), pkiPath("ca.key"), pkiPath("sa.key"), pkiPath("front-proxy-ca.crt")}
	case SchedulerUnit:
		return []string{SchedulerKubeconfig}
	case KubeProxyUnit:
		return []string{KubeProxyConfigFile, KubeProxyKubeconfig}
	case KubeletUnit:
		return []string{KubeletConfigFile, KubeletKubeconfig, pkiPath("ca.crt")}
	case ContainerdUnit:
		return []string{ContainerdConfigFile}
	}
	return nil
}

// ChangedUnits returns the units among names whose inputs a render
// created or updated.
func ChangedUnits(written []Written, names []string) []string {
	changed := map[string]bool{}
	for _, w := range written {
		if w.Result != hostfs.Unchanged {
			changed[w.Path] = true
		}
	}
	var out []string
	for _, n := range names {
		for _, in := range UnitInputs(n) {
			if changed[in] {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// EtcdUnitSpec runs etcd from the agent's own binary.
func EtcdUnitSpec(cfg *config.Config) units.Spec {
	return units.Spec{
		Name:          EtcdUnit,
		Description:   "etcd key-value store (run by ecom-agent)",
		Documentation: []string{"https://etcd.io/docs/", docsURL},
		Wants:         []string{"network-online.target"},
		After:         []string{"network-online.target"},
		// etcd tells systemd it is ready once it has joined a quorum; a
		// founding member waits for its peers, however long they take.
		Type:         units.TypeNotify,
		ExecStart:    []string{AgentBinary, "etcd", "--config-file=" + EtcdConfigFile},
		Restart:      units.RestartAlways,
		RestartDelay: 5 * time.Second,
		StartTimeout: units.Infinity,
		LimitNOFILE:  65536,
		StartLimit:   &units.StartLimit{Interval: 0},
		WantedBy:     []string{"multi-user.target"},
	}
}

// componentSpec is the shape every control-plane component's unit shares.
func componentSpec(name, desc, binary string, flags Flags, typ units.ServiceType) units.Spec {
	return units.Spec{
		Name:          name,
		Description:   desc + " (run by ecom-agent)",
		Documentation: []string{"https://kubernetes.io/docs/reference/command-line-tools-reference/", docsURL},
		Wants:         []string{"network-online.target"},
		After:         []string{"network-online.target"},
		Type:          typ,
		ExecStart:     append([]string{binary}, flags.Args()...),
		Restart:       units.RestartAlways,
		RestartDelay:  5 * time.Second,
		LimitNOFILE:   65536,
		StartLimit:    &units.StartLimit{Interval: 0},
		WantedBy:      []string{"multi-user.target"},
	}
}

// KubeletUnitSpec runs the kubelet after the container runtime.
func KubeletUnitSpec(cfg *config.Config) units.Spec {
	s := componentSpec(KubeletUnit, "Kubernetes node agent", cfg.Binaries.Kubelet, KubeletFlags(cfg), units.TypeSimple)
	s.Wants = append(s.Wants, "containerd.service")
	s.After = append(s.After, "containerd.service")
	s.RestartDelay = 10 * time.Second
	s.EnvironmentFiles = []string{"-" + EnvironmentFile}
	return s
}

// AgentUnitSpec is ecom-agent's own unit, shipped in the package at
// /lib/systemd/system. It stays disabled until `ecom-agent join` enables
// it, so installing the package starts nothing on an unconfigured host.
func AgentUnitSpec() units.Spec {
	return units.Spec{
		Name:          AgentUnit,
		Description:   "ecom-agent: Kubernetes node bootstrap agent",
		Documentation: []string{docsURL},
		Wants:         []string{"network-online.target"},
		After:         []string{"network-online.target"},
		Type:          units.TypeNotify,
		ExecStart:     []string{AgentBinary, "run", "--config=" + AgentConfigFile},
		// The operator's environment (a proxy's settings), if any.
		EnvironmentFiles: []string{"-" + EnvironmentFile},
		// The control socket's directory, made and cleaned by systemd.
		RuntimeDirectory: path.Base(AgentRuntimeDir),
		Restart:          units.RestartAlways,
		RestartDelay:     5 * time.Second,
		// An invalid config (exit 78, EX_CONFIG) needs an operator, not
		// a restart loop.
		RestartPreventExitStatus: []int{78},
		Watchdog:                 2 * time.Minute,
		// The agent stops its work cleanly on SIGTERM; the units it
		// manages keep running (they are separate units).
		StopTimeout: 30 * time.Second,
		StartLimit:  &units.StartLimit{Interval: 0},
		// The agent uses about 60 MiB; the caps stop a leak, or a flood
		// of peers, before it hurts etcd and the kubelet on the same
		// host (the programs it runs, ctr and iptables, count too).
		MemoryMax: 1 << 30,
		TasksMax:  1024,
		WantedBy:  []string{"multi-user.target"},
	}
}

func (r *Renderer) phaseUnits(_ context.Context) error {
	local := EtcdClientURL(r.cfg.AdvertiseAddress, r.cfg.Etcd.ClientPort)
	for _, s := range ComponentUnits(r.cfg, EtcdServers(local, r.Membership.ClientURLs(r.cfg.Etcd.ClientPort))) {
		data, err := units.Render(s)
		if err != nil {
			return err
		}
		if err := r.write(s.Path(), data, 0o644, ""); err != nil {
			return err
		}
	}
	// The agent's own unit is the package's file (dpkg owns it): written
	// only where none is installed, never rewritten.
	if ok, err := r.root.Exists(AgentUnitFile); err != nil || ok {
		return err
	}
	data, err := units.Render(AgentUnitSpec())
	if err != nil {
		return fmt.Errorf("agent unit: %w", err)
	}
	return r.write(AgentUnitFile, data, 0o644, "")
}
