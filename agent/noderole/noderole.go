// Package noderole labels a control-plane node's Node with
// node-role.kubernetes.io/control-plane, as kubeadm's mark-control-plane
// phase does. The kubelet cannot set that label itself (it refuses
// node-role labels in --node-labels, and the NodeRestriction admission
// plugin keeps a kubelet from claiming a role), so the agent sets it
// with its own identity, once the Node is registered.
package noderole

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Name is the component's name.
const Name = "node-role"

// ControlPlaneLabel marks a control-plane node, as kubeadm and every
// tool that reads node roles (kubectl get nodes' ROLES) expect.
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"

// Deps are what the component needs.
type Deps struct {
	// Node is this node's name.
	Node string
	// Client makes the API client, with the agent's own identity.
	Client func() (kubernetes.Interface, error)
	Log    *slog.Logger
}

// Labeler is the component.
type Labeler struct {
	d    Deps
	mu   sync.Mutex
	done bool
}

// New returns the component.
func New(d Deps) *Labeler { return &Labeler{d: d} }

// Name implements component.Component.
func (l *Labeler) Name() string { return Name }

// Ready implements component.Component: nothing waits for the label.
func (l *Labeler) Ready() bool { return true }

// Stop implements component.Component.
func (l *Labeler) Stop(context.Context) error { return nil }

// Step labels the Node once it exists; after that it does nothing until
// the agent starts again (an operator may remove the label on purpose).
func (l *Labeler) Step(ctx context.Context) error {
	l.mu.Lock()
	done := l.done
	l.mu.Unlock()
	if done {
		return nil
	}
	cs, err := l.d.Client()
	if err != nil {
		return err
	}
	// A merge patch, not an apply: it never creates a Node the kubelet
	// has not registered.
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{ControlPlaneLabel: ""}}})
	_, err = cs.CoreV1().Nodes().Patch(ctx, l.d.Node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "ecom-agent"})
	if apierrors.IsNotFound(err) {
		return nil // not registered yet: the next step tries again
	}
	if err != nil {
		return fmt.Errorf("label Node %s %s: %w", l.d.Node, ControlPlaneLabel, err)
	}
	l.d.Log.Info("labelled the Node as a control-plane node", "label", ControlPlaneLabel)
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
	return nil
}
