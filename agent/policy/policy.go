// Package policy is the component that enforces the cluster's
// NetworkPolicies on this node: once the node side runs, it starts the
// policy engine (kube-router's network-policy controller, package netpol)
// under kube-proxy's identity, then reads the filter table every few
// seconds and reports what the kernel holds: a hook found missing (an
// operator's `iptables -F`) asks the engine for a full sync at once. With
// network.policy = false it removes the engine's rules once and reports
// policy as off.
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/kubeclient"
	"github.com/ecom-platform/ecom-agent/netpol"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

// Name names the component.
const Name = "network-policy"

// Pace is how often the filter table is read back.
const Pace = 5 * time.Second

// firstSyncGrace is how long after the engine's start a missing hook is
// its first sync still running, not a fault.
const firstSyncGrace = 20 * time.Second

// Deps are what the component needs.
type Deps struct {
	Config *config.Config
	Root   *hostfs.Root
	Log    *slog.Logger
	// Run runs iptables, iptables-save and ipset on the host.
	Run units.Runner
	// Kubeconfig is the identity the engine reads pods, namespaces and
	// NetworkPolicies with (kube-proxy's).
	Kubeconfig string
	// Client is the API client of Kubeconfig (nil: read from Root).
	Client func() (kubernetes.Interface, error)
	// Start starts the engine (nil: netpol.StartKubeRouter).
	Start func(ctx context.Context, cs kubernetes.Interface, s netpol.Settings) (netpol.Engine, error)
	Now   func() time.Time
}

// Policy is the component.
type Policy struct {
	d Deps

	mu      sync.Mutex
	engine  netpol.Engine
	started time.Time
	cleaned bool
	st      status.NetworkPolicyStatus
}

// New returns the component.
func New(d Deps) *Policy {
	if d.Start == nil {
		d.Start = netpol.StartKubeRouter
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Run == nil {
		d.Run = units.ExecRunner{}
	}
	if d.Client == nil {
		d.Client = func() (kubernetes.Interface, error) {
			rc, err := kubeclient.RESTConfig(d.Root, d.Kubeconfig)
			if err != nil {
				return nil, fmt.Errorf("waiting for the node's kube-proxy credentials: %w", err)
			}
			rc.Timeout = 15 * time.Second
			return kubernetes.NewForConfig(rc)
		}
	}
	return &Policy{d: d}
}

// Name names the component.
func (p *Policy) Name() string { return Name }

// Ready is always true: nothing waits for this component.
func (p *Policy) Ready() bool { return true }

// Pace is how often the component steps.
func (p *Policy) Pace() time.Duration { return Pace }

// Step starts the engine when it does not run, then compares the kernel
// with it.
func (p *Policy) Step(ctx context.Context) error {
	if !p.d.Config.Network.Policy {
		return p.off(ctx)
	}
	p.mu.Lock()
	e := p.engine
	p.mu.Unlock()
	if e != nil && e.Failed() {
		// Its rules stay in the kernel meanwhile; a new engine takes
		// them over.
		p.d.Log.Error("the network-policy engine stopped on a fatal error (its message is in the journal, component client-go); starting it again")
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := p.Stop(sctx); err != nil {
			p.d.Log.Warn("stop the failed network-policy engine", "err", err)
		}
		cancel()
		e = nil
	}
	if e == nil {
		var err error
		if e, err = p.start(ctx); err != nil {
			p.set(func(st *status.NetworkPolicyStatus) {
				*st = status.NetworkPolicyStatus{Engine: netpol.EngineName, Error: err.Error()}
			})
			return err
		}
	}
	k, err := netpol.ReadKernel(ctx, p.d.Run)
	if err != nil {
		p.set(func(st *status.NetworkPolicyStatus) { st.Enforcing, st.Error = false, err.Error() })
		return err
	}
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	msg := ""
	if !k.Enforcing() {
		msg = fmt.Sprintf("the filter table's %s do not jump to the engine's chains", strings.Join(k.Missing(), ", "))
		if p.d.Now().Sub(started) < firstSyncGrace {
			msg += " yet (its first sync runs)"
		} else {
			p.d.Log.Warn("network-policy hooks missing from the filter table; asking for a full sync", "missing", k.Missing())
			e.Resync()
		}
	}
	p.set(func(st *status.NetworkPolicyStatus) {
		*st = status.NetworkPolicyStatus{Engine: netpol.EngineName, Enforcing: k.Enforcing(), PolicyChains: k.PolicyChains,
			PodChains: k.PodChains, LastSync: e.LastSync(), Error: msg}
	})
	if msg != "" {
		return errors.New(msg)
	}
	return nil
}

// start checks what the engine needs and starts it.
func (p *Policy) start(ctx context.Context) (netpol.Engine, error) {
	cfg := p.d.Config
	cs, err := p.d.Client()
	if err != nil {
		return nil, err
	}
	// The engine tells this node's pods apart by the Node's address.
	if _, err := cs.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("waiting for the kubelet to register Node %s", cfg.NodeName)
		}
		return nil, fmt.Errorf("read Node %s: %w", cfg.NodeName, err)
	}
	// The engine ends the process when iptables fails inside it (it
	// calls klog.Fatal): check that the programs run first.
	for _, c := range [][]string{{"iptables", "-w", "5", "-t", "filter", "-S", "INPUT"}, {"iptables-save", "-t", "filter"}, {"ipset", "list", "-n"}} {
		if _, err := p.d.Run.Output(ctx, c[0], c[1:]...); err != nil {
			return nil, fmt.Errorf("%s does not run (install the iptables and ipset packages): %w", c[0], err)
		}
	}
	e, err := p.d.Start(ctx, cs, netpol.Settings{NodeName: cfg.NodeName, ServiceCIDR: cfg.Network.ServiceCIDR})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", netpol.EngineName, err)
	}
	p.mu.Lock()
	p.engine, p.started, p.cleaned = e, p.d.Now(), false
	p.mu.Unlock()
	p.d.Log.Info("enforcing NetworkPolicy", "engine", netpol.EngineName, "node", cfg.NodeName)
	return e, nil
}

// off removes the engine's rules once (policy was switched off, or the
// node enforced it before) and reports policy as off.
func (p *Policy) off(ctx context.Context) error {
	p.mu.Lock()
	done := p.cleaned
	p.mu.Unlock()
	if done {
		return nil
	}
	k, err := netpol.ReadKernel(ctx, p.d.Run)
	if err == nil && (len(k.Hooked) > 0 || k.PolicyChains > 0 || k.PodChains > 0) {
		n, cerr := netpol.Cleanup(ctx, p.d.Run)
		if cerr != nil {
			p.set(func(st *status.NetworkPolicyStatus) { *st = status.NetworkPolicyStatus{Off: true, Error: cerr.Error()} })
			return fmt.Errorf("network.policy is false: remove the engine's rules: %w", cerr)
		}
		p.d.Log.Info("network.policy is false: removed the network-policy engine's rules", "removed", n)
	}
	p.mu.Lock()
	p.cleaned = true
	p.st = status.NetworkPolicyStatus{Off: true}
	p.mu.Unlock()
	return nil
}

func (p *Policy) set(f func(*status.NetworkPolicyStatus)) {
	p.mu.Lock()
	f(&p.st)
	p.mu.Unlock()
}

// Stop stops the engine; its rules stay in the kernel, enforced, until
// the agent starts it again.
func (p *Policy) Stop(ctx context.Context) error {
	p.mu.Lock()
	e := p.engine
	p.engine = nil
	p.mu.Unlock()
	if e == nil {
		return nil
	}
	return e.Stop(ctx)
}

// Report fills the status's network_policy section.
func (p *Policy) Report(s *status.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st.Engine != "" || p.st.Off {
		st := p.st
		s.NetworkPolicy = &st
	}
}
