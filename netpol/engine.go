package netpol

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// EngineName names the engine in the status and the docs.
const EngineName = "kube-router v2.1.0 network-policy controller"

// SyncPeriod is how often the engine rewrites its rules in full, besides
// every change of a pod, namespace or NetworkPolicy (kube-router's
// default is 5 minutes; rules removed by hand come back sooner).
const SyncPeriod = time.Minute

// cacheSyncTimeout bounds the first list of pods, namespaces and
// NetworkPolicies: an identity without the rights to them never syncs.
const cacheSyncTimeout = 30 * time.Second

// Settings are what the engine needs of the cluster and the node.
type Settings struct {
	// NodeName is this node's Node: the engine enforces for the pods on
	// it (its InternalIP tells them apart).
	NodeName string
	// ServiceCIDR is the cluster's service range.
	ServiceCIDR netip.Prefix
	// NodePortRange is the API server's node-port range, "30000-32767".
	NodePortRange string
}

// Engine is a running policy engine.
type Engine interface {
	// LastSync is when the engine last began a full sync (zero before
	// the first).
	LastSync() time.Time
	// Resync asks for a full sync now (the rules in the kernel were
	// found changed); it does not wait for it.
	Resync()
	// Failed reports whether the engine stopped on a fatal error: start
	// another one.
	Failed() bool
	// Stop stops the engine and waits for it, at most until ctx is done.
	// Its rules stay in the kernel and keep being enforced.
	Stop(ctx context.Context) error
}

// fatals counts klog.Fatal calls in this process; see catchFatal.
var fatals atomic.Int64

var catchOnce sync.Once

// catchFatal makes klog.Fatal end the calling goroutine instead of the
// process. kube-router's controller calls klog.Fatal when an iptables
// command fails (the xtables lock held too long, a chain changed under
// it), which would take the whole agent down with it; instead its
// goroutine ends (runtime.Goexit runs its deferred unlocks and
// WaitGroup.Done), the engine reports Failed, and agent/policy starts a
// new one. Nothing else in the agent calls klog.Fatal.
func catchFatal() {
	catchOnce.Do(func() {
		klog.OsExit = func(int) {
			fatals.Add(1)
			runtime.Goexit()
		}
	})
}

// StartKubeRouter starts kube-router's network-policy controller with
// client cs: it lists and watches pods, namespaces and NetworkPolicies
// (the identity needs those rights: agent/controlplane binds them to
// kube-proxy's), reads the Node, then keeps the filter table's
// KUBE-ROUTER-* chains and the ipsets of the policies in step. It needs
// iptables, iptables-save, iptables-restore and ipset in the PATH.
func StartKubeRouter(ctx context.Context, cs kubernetes.Interface, s Settings) (Engine, error) {
	catchFatal()
	cfg := options.NewKubeRouterConfig()
	cfg.EnableIPv4, cfg.EnableIPv6 = true, false
	cfg.RunFirewall = true
	cfg.HostnameOverride = s.NodeName
	cfg.ClusterIPCIDRs = []string{s.ServiceCIDR.String()}
	if s.NodePortRange != "" {
		cfg.NodePortRange = s.NodePortRange
	}
	cfg.IPTablesSyncPeriod = SyncPeriod
	cfg.MetricsEnabled = false

	stop := make(chan struct{})
	factory := informers.NewSharedInformerFactory(cs, 0)
	pods := factory.Core().V1().Pods().Informer()
	namespaces := factory.Core().V1().Namespaces().Informer()
	policies := factory.Networking().V1().NetworkPolicies().Informer()
	factory.Start(stop)
	fail := func(err error) (Engine, error) {
		close(stop)
		factory.Shutdown()
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, cacheSyncTimeout)
	synced := cache.WaitForCacheSync(sctx.Done(), pods.HasSynced, namespaces.HasSynced, policies.HasSynced)
	cancel()
	if !synced {
		return fail(fmt.Errorf("list pods, namespaces and networkpolicies: not done within %s (does the identity have the ClusterRole ecom-agent:network-policy?)", cacheSyncTimeout))
	}
	iptablesHandlers, ipsetHandlers, err := netpol.NewIPTablesHandlers(cfg)
	if err != nil {
		return fail(fmt.Errorf("%w (install the iptables and ipset packages)", err))
	}
	npc, err := netpol.NewNetworkPolicyController(cs, cfg, pods, policies, namespaces, &sync.Mutex{}, iptablesHandlers, ipsetHandlers)
	if err != nil {
		return fail(err)
	}
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{{pods, npc.PodEventHandler}, {namespaces, npc.NamespaceEventHandler}, {policies, npc.NetworkPolicyEventHandler}} {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return fail(err)
		}
	}
	e := &kubeRouter{npc: npc, fatals: fatals.Load(), stop: stop, factory: factory, health: make(chan *healthcheck.ControllerHeartbeat, 8), done: make(chan struct{})}
	e.wg.Add(1)
	go npc.Run(e.health, stop, &e.wg)
	go e.beats()
	return e, nil
}

// kubeRouter is kube-router's controller running in this process.
type kubeRouter struct {
	npc      *netpol.NetworkPolicyController
	fatals   int64 // fatals when it started
	stop     chan struct{}
	once     sync.Once
	factory  informers.SharedInformerFactory
	wg       sync.WaitGroup
	health   chan *healthcheck.ControllerHeartbeat
	done     chan struct{}
	lastSync atomic.Int64
}

// beats records the controller's heartbeats (one at the start of every
// full sync) until it stops.
func (e *kubeRouter) beats() {
	for {
		select {
		case hb := <-e.health:
			e.lastSync.Store(hb.LastHeartBeat.UnixNano())
		case <-e.done:
			return
		}
	}
}

func (e *kubeRouter) LastSync() time.Time {
	if n := e.lastSync.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

func (e *kubeRouter) Resync() { e.npc.RequestFullSync() }

func (e *kubeRouter) Failed() bool { return fatals.Load() > e.fatals }

func (e *kubeRouter) Stop(ctx context.Context) error {
	e.once.Do(func() { close(e.stop) })
	waited := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(waited)
	}()
	// The controller may be sending a heartbeat: keep draining until it
	// is done.
	for {
		select {
		case <-e.health:
		case <-waited:
			e.factory.Shutdown()
			select {
			case <-e.done:
			default:
				close(e.done)
			}
			return nil
		case <-ctx.Done():
			return errors.New("the network-policy controller did not stop in time: " + ctx.Err().Error())
		}
	}
}
