package noderole

import (
	"context"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ecom-platform/ecom-agent/integration/kubetest"
)

// On a real API server: no Node, no label and no Node created; once the
// Node is registered, the label is set, other labels kept.
func TestLabelsTheRegisteredNode(t *testing.T) {
	c := kubetest.Start(t)
	cs := c.Clientset(t)
	ctx := context.Background()
	l := New(Deps{Node: "cp-1", Log: slog.New(slog.DiscardHandler),
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
