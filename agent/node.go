package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ecom-platform/ecom-agent/apilb"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodecheck"
	"github.com/ecom-platform/ecom-agent/units"
)

// nodeUnits are the units the node side runs, in start order: containerd
// unless the operator runs the runtime, the kubelet, and on a worker
// kube-proxy (a control-plane node starts it with its control plane).
func nodeUnits(cfg *config.Config) []string {
	var u []string
	if cfg.ManagesContainerd() {
		u = append(u, bootstrap.ContainerdUnit)
	}
	u = append(u, bootstrap.KubeletUnit)
	if !cfg.IsControlPlane() {
		u = append(u, bootstrap.KubeProxyUnit)
	}
	return u
}

// NodeStatus is this node's kubelet side as the status shows it: the
// container runtime, the images imported, the Node's readiness and the
// pod network.
type NodeStatus struct {
	// Runtime is what the container runtime says of itself over CRI.
	Runtime string `json:"runtime,omitempty"`
	// Images are the image archives imported into containerd's k8s.io
	// namespace before the kubelet started.
	Images []string `json:"images,omitempty"`
	// KubeletStarted is true once the kubelet's unit was started.
	KubeletStarted bool `json:"kubelet_started"`
	// Ready is the Node's Ready condition; Reason says why not.
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	// PodCIDR is the Node's pod range, once the controller manager gave
	// it one; the pod network's config is written then.
	PodCIDR string `json:"pod_cidr,omitempty"`
	// Routes are the other nodes' pod ranges routed through them.
	Routes []string `json:"routes,omitempty"`
	// Preflight lists what keeps the kubelet from starting, each with
	// its fix.
	Preflight []string `json:"preflight,omitempty"`
	// Error is the last step that failed; the agent retries.
	Error string `json:"error,omitempty"`
	// APILoadBalancer is a worker's load balancer on 127.0.0.1:6444:
	// the API servers it spreads to and their health.
	APILoadBalancer []apilb.EndpointStatus `json:"api_load_balancer,omitempty"`
}

// node runs what every node runs for its kubelet: containerd with the
// node's images, the kubelet, and the pod network (the CNI config for the
// Node's pod CIDR and routes to the other nodes' pods). Every step is
// idempotent; a failed one is retried on the next tick.
type node struct {
	d *Daemon
	// running is held while a tick runs: ticks run beside the watch
	// loop (starting containerd or importing images takes seconds) and
	// never two at once.
	running sync.Mutex

	mu      sync.Mutex
	status  NodeStatus
	started bool
	cs      kubernetes.Interface
	csFrom  string
	routes  map[netip.Prefix]netip.Addr // applied: pod CIDR -> via
	masq    string                      // the pod CIDR masqueraded
	lastErr string
	// refusedCSR remembers the serving-certificate requests left
	// pending, so each is logged once.
	refusedCSR map[string]bool
}

func newNode(d *Daemon) *node { return &node{d: d, routes: map[netip.Prefix]netip.Addr{}} }

// Status returns a copy of the node's status.
func (n *node) Status() NodeStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.status
	s.Images = slices.Clone(s.Images)
	s.Routes = slices.Clone(s.Routes)
	s.Preflight = slices.Clone(s.Preflight)
	return s
}

func (n *node) setError(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	n.status.Error = msg
	if msg != "" && msg != n.lastErr {
		n.d.d.Log.Warn("node: will retry", "err", msg)
	}
	n.lastErr = msg
}

// kick runs a tick in the background unless one is running.
func (n *node) kick(ctx context.Context, written []bootstrap.Written, kubeconfig string) {
	if !n.running.TryLock() {
		return
	}
	go func() {
		defer n.running.Unlock()
		n.tick(ctx, written, kubeconfig)
	}()
}

// tick starts the runtime and the kubelet once, then keeps the pod
// network in step with the Nodes. kubeconfig is the identity the agent
// reads Nodes with.
func (n *node) tick(ctx context.Context, written []bootstrap.Written, kubeconfig string) {
	n.mu.Lock()
	started := n.started
	n.mu.Unlock()
	if !started {
		if err := n.start(ctx, written); err != nil {
			n.setError(err)
			return
		}
	}
	n.setError(n.network(ctx, kubeconfig))
}

// start sets the sysctls, starts containerd, imports the images, runs the
// node's preflight and starts the kubelet.
func (n *node) start(ctx context.Context, written []bootstrap.Written) error {
	d := n.d
	cfg := d.d.Config
	if changed, err := nodecheck.EnsureSysctls(d.d.Root.Dir()); err != nil {
		return err
	} else if len(changed) > 0 {
		d.d.Log.Info("set kernel parameters the kubelet needs", "sysctls", changed)
	}
	names := nodeUnits(cfg)
	var specs []units.Spec
	for _, s := range bootstrap.ComponentUnits(cfg, nil) {
		if slices.Contains(names, s.Name) {
			specs = append(specs, s)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, unitJobTimeout)
	changes, err := d.sd.Apply(sctx, specs)
	cancel()
	if err != nil {
		return fmt.Errorf("apply node units: %w", err)
	}
	if err := d.saveState(func(s *State) { s.NodeUnits = true }); err != nil {
		return err
	}
	restart := slices.Concat(changes.Written, changes.Stale, bootstrap.ChangedUnits(written, names))
	if cfg.ManagesContainerd() {
		done, err := d.bringUp(ctx, bootstrap.ContainerdUnit, restart)
		if err != nil {
			return err
		}
		if done != nil {
			if err := <-done; err != nil {
				return fmt.Errorf("start containerd: %w", err)
			}
		}
		imported, err := n.importImages(ctx)
		n.mu.Lock()
		n.status.Images = imported
		n.mu.Unlock()
		if err != nil {
			return err
		}
	}
	rep := nodecheck.Run(ctx, nodecheck.Options{
		Root:         d.d.Root.Dir(),
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
		done, err := d.bringUp(ctx, name, restart)
		if err != nil {
			return err
		}
		if done != nil {
			go func() {
				if err := <-done; err != nil && ctx.Err() == nil {
					d.d.Log.Warn("unit job failed; systemd keeps restarting it", "unit", name, "err", err)
				}
			}()
		}
	}
	n.mu.Lock()
	n.started, n.status.KubeletStarted = true, true
	n.mu.Unlock()
	return nil
}

// importImages imports every image archive the package ships and the
// operator dropped in ImagesDir into containerd's k8s.io namespace, so the
// kubelet finds the sandbox image and the node's workloads without a
// registry. Importing an archive again changes nothing.
func (n *node) importImages(ctx context.Context) ([]string, error) {
	d := n.d
	var archives []string
	for _, dir := range []string{bootstrap.PackageImagesDir, bootstrap.ImagesDir} {
		entries, err := d.d.Root.ReadDir(dir)
		if err != nil {
			continue // no such directory: nothing to import
		}
		for _, e := range entries {
			if !e.IsDir() && strings.HasSuffix(e.Name(), ".tar") {
				archives = append(archives, path.Join(dir, e.Name()))
			}
		}
	}
	var done []string
	var errs []error
	for _, a := range archives {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		out, err := d.run(ictx, d.d.Config.Binaries.Ctr, "--address", bootstrap.ContainerdSocket(d.d.Config), "--namespace", "k8s.io",
			"images", "import", "--label", "io.cri-containerd.pinned=pinned", d.d.Root.Path(a))
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("import %s into containerd: %w: %s", a, err, lastLine(out)))
			continue
		}
		done = append(done, a)
	}
	if len(done) > 0 {
		d.d.Log.Info("imported images into containerd", "archives", done)
	}
	return done, errors.Join(errs...)
}

// network writes the CNI config once the Node has its pod CIDR, routes
// the other nodes' pod ranges through them, and records the Node's
// readiness.
func (n *node) network(ctx context.Context, kubeconfig string) error {
	d := n.d
	cfg := d.d.Config
	cs, err := n.client(kubeconfig)
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
	n.status.Routes = routes
	n.mu.Unlock()

	for cidr, via := range want {
		if n.routes[cidr] == via {
			continue
		}
		if out, err := d.run(ctx, "ip", "route", "replace", cidr.String(), "via", via.String()); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w: %s", cidr, via, err, lastLine(out)))
			continue
		}
		d.d.Log.Info("routed another node's pods", "pod_cidr", cidr, "via", via)
		n.routes[cidr] = via
	}
	for cidr := range n.routes {
		if _, ok := want[cidr]; ok {
			continue
		}
		if out, err := d.run(ctx, "ip", "route", "del", cidr.String()); err != nil && !strings.Contains(string(out), "No such process") {
			errs = append(errs, fmt.Errorf("remove route %s: %w: %s", cidr, err, lastLine(out)))
			continue
		}
		d.d.Log.Info("removed the route of a node that is gone", "pod_cidr", cidr)
		delete(n.routes, cidr)
	}
	podCIDR, err := netip.ParsePrefix(self.Spec.PodCIDR)
	if err != nil {
		return errors.Join(errs...) // no pod CIDR allocated yet
	}
	conf, err := bootstrap.PodNetworkConfig(podCIDR, cfg.Network.PodCIDR)
	if err != nil {
		return err
	}
	if res, err := d.d.Root.WriteFile(bootstrap.CNIConfFile, conf, 0o644); err != nil {
		return err
	} else if res != hostfs.Unchanged {
		d.d.Log.Info("wrote the pod network's config", "path", bootstrap.CNIConfFile, "pod_cidr", podCIDR)
	}
	if n.masq != podCIDR.String() {
		if err := n.masquerade(ctx, podCIDR); err != nil {
			errs = append(errs, err)
		} else {
			n.masq = podCIDR.String()
		}
	}
	return errors.Join(errs...)
}

// masqueradeRule is the agent's NAT rule (after iptables' -t nat -A/-C/-D)
// for a node's pod CIDR inside the cluster's pod range.
func masqueradeRule(podCIDR, clusterCIDR string) []string {
	return []string{"POSTROUTING", "-s", podCIDR, "!", "-d", clusterCIDR,
		"-m", "comment", "--comment", "ecom-agent: pods to outside the cluster's pod range", "-j", "MASQUERADE"}
}

// masquerade makes traffic from this node's pods to anywhere but the
// cluster's pods leave with the node's address; pod-to-pod traffic keeps
// its addresses.
func (n *node) masquerade(ctx context.Context, podCIDR netip.Prefix) error {
	rule := masqueradeRule(podCIDR.Masked().String(), n.d.d.Config.Network.PodCIDR.String())
	if _, err := n.d.run(ctx, "iptables", append([]string{"-w", "5", "-t", "nat", "-C"}, rule...)...); err == nil {
		return nil
	}
	if out, err := n.d.run(ctx, "iptables", append([]string{"-w", "5", "-t", "nat", "-A"}, rule...)...); err != nil {
		return fmt.Errorf("masquerade pod traffic: %w: %s", err, lastLine(out))
	}
	return nil
}

func (n *node) client(kubeconfig string) (kubernetes.Interface, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cs != nil && n.csFrom == kubeconfig {
		return n.cs, nil
	}
	rc, err := restConfig(n.d.d.Root, kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	n.cs, n.csFrom = cs, kubeconfig
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

// run runs a host program (ctr, ip, iptables) through Deps.Exec.
func (d *Daemon) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if d.d.Exec != nil {
		return d.d.Exec(ctx, name, args...)
	}
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// lastLine is the last non-empty line of a program's output, for errors.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
