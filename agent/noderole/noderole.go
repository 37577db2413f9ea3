// Package noderole gives a control-plane node's Node its role: the label
// node-role.kubernetes.io/control-plane, as kubeadm's mark-control-plane
// phase does, and the taint of the same key while the cluster has a
// worker Node (node.control_plane_taint: PreferNoSchedule by default).
// The kubelet cannot do either itself: it refuses node-role labels in
// --node-labels, and the NodeRestriction admission plugin keeps a kubelet
// from claiming a role or changing its taints. The agent does both with
// its own identity, once the Node is registered.
package noderole

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ecom-platform/ecom-agent/config"
)

// Name is the component's name.
const Name = "node-role"

// ControlPlaneLabel marks a control-plane node, as kubeadm and every
// tool that reads node roles (kubectl get nodes' ROLES) expect; the
// control-plane taint has the same key.
const ControlPlaneLabel = config.ControlPlaneTaintKey

// taintPace is how often the taint is checked against the cluster's
// Nodes: a worker that registers is seen within it.
const taintPace = 10 * time.Second

// Deps are what the component needs.
type Deps struct {
	// Node is this node's name.
	Node string
	// Taint is node.control_plane_taint.
	Taint config.TaintEffect
	// ControlPlanes lists the control-plane nodes' names in the gossip
	// view: a Node not yet labelled by its own agent is not a worker.
	ControlPlanes func() []string
	// Client makes the API client, with the agent's own identity.
	Client func() (kubernetes.Interface, error)
	Log    *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Labeler is the component.
type Labeler struct {
	d         Deps
	mu        sync.Mutex
	labelled  bool
	nextTaint time.Time
}

// New returns the component.
func New(d Deps) *Labeler {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.ControlPlanes == nil {
		d.ControlPlanes = func() []string { return nil }
	}
	return &Labeler{d: d}
}

// Name implements component.Component.
func (l *Labeler) Name() string { return Name }

// Ready implements component.Component: nothing waits for the role.
func (l *Labeler) Ready() bool { return true }

// Stop implements component.Component.
func (l *Labeler) Stop(context.Context) error { return nil }

// Step labels the Node once it exists (after that the label is left
// alone until the agent starts again: an operator may remove it on
// purpose), then keeps the taint as the cluster's workers call for.
func (l *Labeler) Step(ctx context.Context) error {
	l.mu.Lock()
	labelled, due := l.labelled, !l.d.Now().Before(l.nextTaint)
	l.mu.Unlock()
	if labelled && !due {
		return nil
	}
	cs, err := l.d.Client()
	if err != nil {
		return err
	}
	if !labelled {
		ok, err := l.label(ctx, cs)
		if err != nil || !ok {
			return err
		}
	}
	if due {
		return l.taint(ctx, cs)
	}
	return nil
}

// label sets the role label; false while the Node is not registered.
func (l *Labeler) label(ctx context.Context, cs kubernetes.Interface) (bool, error) {
	// A merge patch, not an apply: it never creates a Node the kubelet
	// has not registered.
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{ControlPlaneLabel: ""}}})
	_, err := cs.CoreV1().Nodes().Patch(ctx, l.d.Node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "ecom-agent"})
	if apierrors.IsNotFound(err) {
		return false, nil // not registered yet: the next step tries again
	}
	if err != nil {
		return false, fmt.Errorf("label Node %s %s: %w", l.d.Node, ControlPlaneLabel, err)
	}
	l.d.Log.Info("labelled the Node as a control-plane node", "label", ControlPlaneLabel)
	l.mu.Lock()
	l.labelled = true
	l.mu.Unlock()
	return true, nil
}

// taint puts the control-plane taint, of the configured effect, on the
// Node while the cluster has a worker Node, and takes it off when it has
// none: a cluster of control-plane nodes only stays schedulable. With
// "none" it leaves the Node's taints alone.
func (l *Labeler) taint(ctx context.Context, cs kubernetes.Interface) error {
	l.mu.Lock()
	l.nextTaint = l.d.Now().Add(taintPace)
	l.mu.Unlock()
	if l.d.Taint == config.TaintNone {
		return nil // the taint is the operator's (kubectl taint)
	}
	// From the API server's watch cache (resourceVersion 0): every
	// control-plane agent asks every 10 s, etcd is not read for it.
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "!" + ControlPlaneLabel, ResourceVersion: "0"})
	if err != nil {
		return fmt.Errorf("list the worker Nodes: %w", err)
	}
	workers := 0
	cps := l.d.ControlPlanes()
	for _, n := range nodes.Items {
		if !slices.Contains(cps, n.Name) {
			workers++
		}
	}
	want := workers > 0
	n, err := cs.CoreV1().Nodes().Get(ctx, l.d.Node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read Node %s: %w", l.d.Node, err)
	}
	taints, changed := withTaint(n.Spec.Taints, want, corev1.TaintEffect(l.d.Taint))
	if changed {
		// A merge patch of the taints alone (as the node lifecycle
		// controller's), carrying the resourceVersion read above: a
		// change made meanwhile (kubectl taint, that controller) makes
		// it fail, and the next check starts from that. Fields this
		// client does not know are left alone.
		if taints == nil {
			taints = []corev1.Taint{}
		}
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": n.ResourceVersion},
			"spec":     map[string]any{"taints": taints},
		})
		if err != nil {
			return err
		}
		if _, err := cs.CoreV1().Nodes().Patch(ctx, l.d.Node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "ecom-agent"}); err != nil {
			return fmt.Errorf("taint Node %s %s: %w", l.d.Node, config.ControlPlaneTaintKey, err)
		}
		if want {
			l.d.Log.Info("tainted the Node: the cluster has worker Nodes", "taint", config.ControlPlaneTaintKey+":"+string(l.d.Taint), "workers", workers)
		} else {
			l.d.Log.Info("took the control-plane taint off the Node: the cluster has no worker Node", "taint", config.ControlPlaneTaintKey)
		}
	}
	return nil
}

// withTaint is taints with the control-plane taint of effect set (want)
// or without any control-plane taint, and whether that differs.
func withTaint(taints []corev1.Taint, want bool, effect corev1.TaintEffect) ([]corev1.Taint, bool) {
	out := slices.DeleteFunc(slices.Clone(taints), func(t corev1.Taint) bool {
		return t.Key == config.ControlPlaneTaintKey && (!want || t.Effect != effect)
	})
	if want && !slices.ContainsFunc(out, func(t corev1.Taint) bool { return t.Key == config.ControlPlaneTaintKey }) {
		out = append(out, corev1.Taint{Key: config.ControlPlaneTaintKey, Effect: effect})
	}
	return out, !slices.Equal(out, taints)
}
