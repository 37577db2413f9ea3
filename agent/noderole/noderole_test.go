package noderole

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/integration/kubetest"
)

// On a real API server: no Node, no label and no Node created; once the
// Node is registered, the label is set, other labels kept.
func TestLabelsTheRegisteredNode(t *testing.T) {
	c := kubetest.Start(t)
	cs := c.Clientset(t)
	ctx := context.Background()
	l := New(Deps{Node: "cp-1", Taint: config.TaintPreferNoSchedule, Log: slog.New(slog.DiscardHandler),
		Client: func() (kubernetes.Interface, error) { return cs, nil }})
	if err := l.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Get(ctx, "cp-1", metav1.GetOptions{}); err == nil {
		t.Fatal("a step before the kubelet registered created the Node")
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp-1",
		Labels: map[string]string{"kubernetes.io/hostname": "cp-1"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Step(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, "cp-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := n.Labels[ControlPlaneLabel]; !ok || v != "" || n.Labels["kubernetes.io/hostname"] != "cp-1" {
		t.Errorf("labels %v", n.Labels)
	}
}

// The taint follows the cluster's workers: none while every Node is a
// control-plane node (one not labelled yet but in the gossip view
// included), the configured effect once a worker Node registers, a
// changed effect replaced, and off again when the last worker goes.
// "none" leaves the taints as they are; other taints are always kept.
func TestTaintWhileTheClusterHasWorkers(t *testing.T) {
	c := kubetest.Start(t)
	cs := c.Clientset(t)
	ctx := context.Background()
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	node := func(name string, labels map[string]string, taints ...corev1.Taint) {
		t.Helper()
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: corev1.NodeSpec{Taints: taints}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	own := corev1.Taint{Key: "example.com/disk", Value: "ssd", Effect: corev1.TaintEffectNoSchedule}
	node("cp-1", nil, own)
	node("cp-2", nil) // registered, its agent has not labelled it yet
	newLabeler := func(effect config.TaintEffect) *Labeler {
		return New(Deps{Node: "cp-1", Taint: effect, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now },
			ControlPlanes: func() []string { return []string{"cp-1", "cp-2", "cp-3"} },
			Client:        func() (kubernetes.Interface, error) { return cs, nil }})
	}
	l := newLabeler(config.TaintPreferNoSchedule)
	step := func(l *Labeler) []corev1.Taint {
		t.Helper()
		now = now.Add(taintPace)
		if err := l.Step(ctx); err != nil {
			t.Fatal(err)
		}
		n, err := cs.CoreV1().Nodes().Get(ctx, "cp-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ours(n.Spec.Taints)
	}
	cpTaint := func(e corev1.TaintEffect) corev1.Taint {
		return corev1.Taint{Key: config.ControlPlaneTaintKey, Effect: e}
	}
	want := func(what string, got []corev1.Taint, want ...corev1.Taint) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: taints %v, want %v", what, got, want)
			return
		}
		for i := range want {
			if got[i].Key != want[i].Key || got[i].Value != want[i].Value || got[i].Effect != want[i].Effect {
				t.Errorf("%s: taints %v, want %v", what, got, want)
			}
		}
	}
	want("control-plane Nodes only", step(l), own)
	node("w-1", map[string]string{"kubernetes.io/hostname": "w-1"})
	want("a worker registered", step(l), own, cpTaint(corev1.TaintEffectPreferNoSchedule))
	want("a check later", step(l), own, cpTaint(corev1.TaintEffectPreferNoSchedule))
	want("the effect changed", step(newLabeler(config.TaintNoSchedule)), own, cpTaint(corev1.TaintEffectNoSchedule))
	// "none" leaves the taints alone: the one there stays, and one an
	// operator puts on is kept.
	want("none", step(newLabeler(config.TaintNone)), own, cpTaint(corev1.TaintEffectNoSchedule))
	want("back to the default", step(l), own, cpTaint(corev1.TaintEffectPreferNoSchedule))
	if err := cs.CoreV1().Nodes().Delete(ctx, "w-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want("the last worker deleted", step(l), own)
	// Within the pace, no check: a worker registered meanwhile is seen
	// at the next one.
	node("w-2", nil)
	if err := l.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := cs.CoreV1().Nodes().Get(ctx, "cp-1", metav1.GetOptions{}); len(ours(n.Spec.Taints)) != 1 {
		t.Errorf("checked again within %s: %v", taintPace, n.Spec.Taints)
	}
	want("the next check", step(l), own, cpTaint(corev1.TaintEffectPreferNoSchedule))
}

// ours leaves out the taints the API server's admission and the node
// lifecycle controller manage (node.kubernetes.io/not-ready, ...).
func ours(ts []corev1.Taint) []corev1.Taint {
	return slices.DeleteFunc(slices.Clone(ts), func(t corev1.Taint) bool { return strings.HasPrefix(t.Key, "node.kubernetes.io/") })
}
