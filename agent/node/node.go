// Package node is the component that runs what every node runs for its
// kubelet: containerd with the node's images, the kubelet, and the pod
// network (the CNI config for the Node's pod CIDR, routes to the other
// nodes' pods), and on control-plane nodes the approval of kubelets'
// serving certificates.
package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/apilb"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/kubeclient"
	"github.com/ecom-platform/ecom-agent/nodecheck"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

// Name is the component's name.
const Name = "node"

// Systemd is what the node side asks of systemd.
type Systemd interface {
	units.Starter
	Apply(ctx context.Context, specs []units.Spec) (units.Changes, error)
}

// Deps is what the node side is built from.
type Deps struct {
	Config  *config.Config
	Root    *hostfs.Root
	Log     *slog.Logger
	Store   *nodestate.Store
	Systemd Systemd
	// Run runs host programs (ctr, ip, iptables).
	Run units.Runner
	// Written is what the node's last render wrote: units whose inputs
	// changed restart.
	Written func() []bootstrap.Written
	// Kubeconfig is the identity the agent reads Nodes with: its own on
	// a control-plane node, kube-proxy's on a worker (whose
	// system:node-proxier role may list them; the kubelet's own identity
	// may read its Node only).
	Kubeconfig string
	// Members is the gossip view, for the serving-CSR checks.
	Members func() []gossip.Member
	// LoadBalancer, if set, is a worker's API load balancer's state.
	LoadBalancer func() []apilb.EndpointStatus
}

// Node runs the node side. Every step is idempotent; a failed one is
// retried on the next.
type Node struct {
	d Deps

	mu      sync.Mutex
	status  status.NodeStatus
	started bool
	cs      kubernetes.Interface
	routes  map[netip.Prefix]netip.Addr // applied: pod CIDR -> via
	masq    string                      // the pod CIDR masqueraded
	// vxlanGone is set once a host-gw node found no VXLAN device.
	vxlanGone bool
	// refusedCSR remembers the serving-certificate requests left
	// pending, so each is logged once.
	refusedCSR map[string]bool
	// broughtUp are the units a start already started or restarted
	// (only the component's own loop touches it).
	broughtUp map[string]bool
}

var (
	_ component.Component = (*Node)(nil)
	_ component.Reporter  = (*Node)(nil)
)

// New returns the component.
func New(d Deps) *Node {
	return &Node{d: d, routes: map[netip.Prefix]netip.Addr{}, broughtUp: map[string]bool{},
		status: status.NodeStatus{Reason: "the kubelet is not started yet"}}
}

// Name names the component.
func (n *Node) Name() string { return Name }

// Report adds the node side's state once its units are installed.
func (n *Node) Report(s *status.Status) {
	if !n.d.Store.Snapshot().NodeUnits {
		return
	}
	n.mu.Lock()
	ns := n.status
	n.mu.Unlock()
	ns.Images = slices.Clone(ns.Images)
	ns.Routes = slices.Clone(ns.Routes)
	ns.Preflight = slices.Clone(ns.Preflight)
	if n.d.LoadBalancer != nil {
		ns.APILoadBalancer = n.d.LoadBalancer()
	}
	s.Kubelet = &ns
}

// Step starts the runtime and the kubelet once, then keeps the pod
// network in step with the Nodes.
func (n *Node) Step(ctx context.Context) error {
	n.mu.Lock()
	started := n.started
	n.mu.Unlock()
	if !started {
		if err := n.start(ctx); err != nil {
			n.setError(err)
			return err
		}
	} else {
		n.retryImports(ctx)
	}
	err := n.network(ctx)
	n.setError(err)
	return err
}

// Ready reports whether the kubelet was started.
func (n *Node) Ready() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.started
}

// Stop has nothing to release: the units run on.
func (n *Node) Stop(context.Context) error { return nil }

func (n *Node) setError(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.status.Error = msg
}

// start sets the sysctls, starts containerd, imports the images, runs the
// node's preflight and starts the kubelet.
func (n *Node) start(ctx context.Context) error {
	d := n.d
	cfg := d.Config
	if changed, err := nodecheck.EnsureSysctls(d.Root.Dir()); err != nil {
		return err
	} else if len(changed) > 0 {
		d.Log.Info("set kernel parameters the kubelet needs", "sysctls", changed)
	}
	names := bootstrap.UnitsOf(cfg, bootstrap.GroupNode)
	var specs []units.Spec
	for _, s := range bootstrap.ComponentUnits(cfg, nil) {
		if slices.Contains(names, s.Name) {
			specs = append(specs, s)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, units.JobWait)
	changes, err := d.Systemd.Apply(sctx, specs)
	cancel()
	if err != nil {
		return fmt.Errorf("apply node units: %w", err)
	}
	if err := d.Store.Update(func(s *nodestate.State) error { s.NodeUnits = true; return nil }); err != nil {
		return err
	}
	// A unit whose inputs the render changed restarts once: a start
	// that failed later (a preflight failure, an image that did not
	// import) and is retried must not restart it again on every step.
	inputs := slices.DeleteFunc(bootstrap.ChangedUnits(d.Written(), names), func(u string) bool { return n.broughtUp[u] })
	restart := slices.Concat(changes.Written, changes.Stale, inputs)
	if cfg.ManagesContainerd() {
		done, err := units.BringUp(ctx, d.Systemd, d.Log, bootstrap.ContainerdUnit, restart)
		if err != nil {
			return err
		}
		n.broughtUp[bootstrap.ContainerdUnit] = true
		if done != nil {
			if err := <-done; err != nil {
				return fmt.Errorf("start containerd: %w", err)
			}
		}
		// An archive that does not import stops nothing else: the
		// pods that need its images wait for them, and the status says
		// which archive and why.
		imported, failed := n.importImages(ctx)
		n.mu.Lock()
		n.status.Images, n.status.ImageErrors = imported, failed
		n.mu.Unlock()
	}
	rep := nodecheck.Run(ctx, nodecheck.Options{
		Root:         d.Root.Dir(),
		CRIEndpoint:  cfg.Kubelet.ContainerRuntimeEndpoint,
		FailSwapOn:   true,
		CgroupDriver: "systemd",
		Timeout:      10 * time.Second,
	})
	var fails []string
	for _, f := range rep.Failures {
		fails = append(fails, f.Error())
	}
	n.mu.Lock()
	n.status.Preflight = fails
	if rep.Runtime != nil {
		n.status.Runtime = rep.Runtime.String()
	}
	n.mu.Unlock()
	if len(fails) > 0 {
		return fmt.Errorf("the kubelet cannot start until this is fixed: %s", strings.Join(fails, "; "))
	}
	for _, name := range names {
		if name == bootstrap.ContainerdUnit {
			continue // up already
		}
		done, err := units.BringUp(ctx, d.Systemd, d.Log, name, restart)
		if err != nil {
			return err
		}
		n.broughtUp[name] = true
		if done != nil {
			go func() {
				if err := <-done; err != nil && ctx.Err() == nil {
					d.Log.Warn("unit job failed; systemd keeps restarting it", "unit", name, "err", err)
				}
			}()
		}
	}
	n.mu.Lock()
	n.started, n.status.KubeletStarted = true, true
	n.mu.Unlock()
	return nil
}

// retryImports imports the archives again while some did not import:
// an operator may have replaced a truncated file.
func (n *Node) retryImports(ctx context.Context) {
	n.mu.Lock()
	failed := len(n.status.ImageErrors) > 0
	n.mu.Unlock()
	if !failed {
		return
	}
	imported, failed2 := n.importImages(ctx)
	n.mu.Lock()
	n.status.Images, n.status.ImageErrors = imported, failed2
	n.mu.Unlock()
}

// importImages imports every image archive the package ships and the
// operator dropped in ImagesDir into containerd's k8s.io namespace, so the
// kubelet finds the sandbox image and the node's workloads without a
// registry. Importing an archive again changes nothing. It returns the
// archives imported and, for each that was not, the archive and why.
func (n *Node) importImages(ctx context.Context) (done, failed []string) {
	d := n.d
	var archives []string
	for _, dir := range []string{bootstrap.PackageImagesDir, bootstrap.ImagesDir} {
		entries, err := d.Root.ReadDir(dir)
		if err != nil {
			continue // no such directory: nothing to import
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".tar") {
				archives = append(archives, path.Join(dir, e.Name()))
			}
		}
	}
	for _, a := range archives {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		_, err := d.Run.Output(ictx, d.Config.Binaries.Ctr, "--address", bootstrap.ContainerdSocket(d.Config), "--namespace", "k8s.io",
			"images", "import", "--label", "io.cri-containerd.pinned=pinned", d.Root.Path(a))
		cancel()
		if err != nil {
			d.Log.Error("an image archive did not import; the pods that need its images will wait for them", "archive", a, "err", err)
			failed = append(failed, fmt.Sprintf("%s did not import into containerd: %v", a, err))
			continue
		}
		done = append(done, a)
	}
	if len(done) > 0 {
		d.Log.Info("imported images into containerd", "archives", done)
	}
	return done, failed
}

// network writes the CNI config once the Node has its pod CIDR, routes
// the other nodes' pod ranges through them, and records the Node's
// readiness.
func (n *Node) network(ctx context.Context) error {
	d := n.d
	cfg := d.Config
	cs, err := n.client()
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := cs.CoreV1().Nodes().List(lctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	want := map[netip.Prefix]netip.Addr{}
	var self *corev1.Node
	for i := range list.Items {
		nd := &list.Items[i]
		if nd.Name == cfg.NodeName {
			self = nd
			continue
		}
		cidr, err := netip.ParsePrefix(nd.Spec.PodCIDR)
		if err != nil {
			continue // not allocated yet
		}
		if ip := internalIP(nd); ip.IsValid() {
			want[cidr.Masked()] = ip
		}
	}
	var errs []error
	if cfg.IsControlPlane() {
		if _, err := n.approveServingCSRs(lctx, cs, list.Items); err != nil {
			errs = append(errs, err)
		}
	}
	if self == nil {
		n.mu.Lock()
		n.status.Ready, n.status.Reason = false, "the kubelet has not registered the Node yet"
		n.mu.Unlock()
		return errors.Join(errs...)
	}
	ready, reason := nodeReady(self)
	var routes []string
	for cidr, via := range want {
		routes = append(routes, cidr.String()+" via "+via.String())
	}
	slices.Sort(routes)
	n.mu.Lock()
	n.status.Ready, n.status.Reason, n.status.PodCIDR = ready, reason, self.Spec.PodCIDR
	n.status.Routes, n.status.Backend = routes, cfg.Network.Backend
	n.mu.Unlock()

	podCIDR, _ := netip.ParsePrefix(self.Spec.PodCIDR) // invalid until allocated
	mtu, perr := n.routePeers(ctx, want, podCIDR)
	errs = append(errs, perr...)
	if !podCIDR.IsValid() {
		return errors.Join(errs...) // no pod CIDR allocated yet
	}
	conf, err := bootstrap.PodNetworkConfig(podCIDR, cfg.Network.PodCIDR, mtu)
	if err != nil {
		return err
	}
	if res, err := d.Root.WriteFile(bootstrap.CNIConfFile, conf, 0o644); err != nil {
		return err
	} else if res != hostfs.Unchanged {
		d.Log.Info("wrote the pod network's config", "path", bootstrap.CNIConfFile, "pod_cidr", podCIDR)
	}
	// The rule is checked in the kernel on every step, as the routes
	// are: a `iptables -t nat -F` by hand is repaired within a step.
	added, err := n.masquerade(ctx, podCIDR)
	switch {
	case err != nil:
		errs = append(errs, err)
	case added && n.masq == podCIDR.String():
		d.Log.Warn("restored the masquerade rule of this node's pods (it was gone from the nat table)", "pod_cidr", podCIDR)
	case added:
		n.masq = podCIDR.String()
	}
	return errors.Join(errs...)
}

// kernelRoutes reads the main table's IPv4 routes: each destination with
// its gateway (an invalid address for a route without one).
func (n *Node) kernelRoutes(ctx context.Context) (map[netip.Prefix]netip.Addr, error) {
	out, err := n.d.Run.Output(ctx, "ip", "-4", "-json", "route", "show", "table", "main")
	if err != nil {
		return nil, fmt.Errorf("read the routes: %w", err)
	}
	var list []struct {
		Dst     string `json:"dst"`
		Gateway string `json:"gateway"`
	}
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &list); err != nil {
			return nil, fmt.Errorf("read the routes: ip -json: %w", err)
		}
	}
	routes := map[netip.Prefix]netip.Addr{}
	for _, r := range list {
		dst, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			continue // "default", or a host route without a length
		}
		gw, _ := netip.ParseAddr(r.Gateway)
		routes[dst.Masked()] = gw
	}
	return routes, nil
}

// masquerade makes traffic from this node's pods to anywhere but the
// cluster's pods leave with the node's address; pod-to-pod traffic keeps
// its addresses.
// It reports whether it added the rule.
func (n *Node) masquerade(ctx context.Context, podCIDR netip.Prefix) (bool, error) {
	rule := bootstrap.MasqueradeRule(podCIDR.Masked().String(), n.d.Config.Network.PodCIDR.String())
	if _, err := n.d.Run.Output(ctx, "iptables", append([]string{"-w", "5", "-t", "nat", "-C"}, rule...)...); err == nil {
		if n.masq == "" {
			n.masq = podCIDR.String()
		}
		return false, nil
	}
	if _, err := n.d.Run.Output(ctx, "iptables", append([]string{"-w", "5", "-t", "nat", "-A"}, rule...)...); err != nil {
		return false, fmt.Errorf("masquerade pod traffic: %w", err)
	}
	return true, nil
}

func (n *Node) client() (kubernetes.Interface, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cs != nil {
		return n.cs, nil
	}
	rc, err := kubeclient.RESTConfig(n.d.Root, n.d.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	n.cs = cs
	return cs, nil
}

func internalIP(nd *corev1.Node) netip.Addr {
	for _, a := range nd.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				return ip
			}
		}
	}
	return netip.Addr{}
}

// nodeReady returns the Node's Ready condition and, when it is not, why.
func nodeReady(nd *corev1.Node) (bool, string) {
	for _, c := range nd.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return true, ""
			}
			return false, strings.TrimSpace(c.Reason + ": " + c.Message)
		}
	}
	return false, "the kubelet has not reported the Node's readiness yet"
}
