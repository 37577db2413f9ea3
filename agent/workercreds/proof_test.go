package workercreds

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/integration/kubetest"
	"github.com/ecom-platform/ecom-agent/peer"
)

// Once a worker's Node is registered, only the holder of its current
// kubelet credentials gets new ones: the worker itself renews; anyone
// else holding the cluster secret and gossiping under its name (while it
// is down) is refused, with or without someone's credentials.
func TestSignerRequiresProofOnceRegistered(t *testing.T) {
	view := &gossipView{}
	view.set(viewMember("w-1", "127.0.0.1:7946", config.RoleWorker, gossip.StateAlive),
		viewMember("w-2", "127.0.0.1:7947", config.RoleWorker, gossip.StateAlive))
	sg, _ := signingNode(t, view)
	sg.Now = time.Now // proofs are checked against certificates issued now
	addr := serve(t, sg.Config, sg.Handle)
	n := newWorkerNode(t, sg.Config)
	n.view.set(controlPlaneAt("cp-1", addr))
	if err := n.w.fetch(context.Background()); err != nil {
		t.Fatalf("first contact: %v", err)
	}
	view.register("w-1")
	if err := n.w.fetch(context.Background()); err != nil {
		t.Fatalf("renewal by the worker itself: %v", err)
	}

	// Someone else under w-1's name, with no credentials.
	impostor := client(t, sg.Config, "w-1")
	c := newCSRs(t, sg.Config, "system:node:w-1", []string{"system:nodes"}, "system:kube-proxy", nil)
	_, err := call(impostor, addr, c.req)
	wantRefusal(t, "no proof", err, "carries no proof")

	// With w-2's real credentials (a worker taking another's name).
	view.register("w-2")
	w2 := client(t, sg.Config, "w-2")
	c2 := newCSRs(t, sg.Config, "system:node:w-2", []string{"system:nodes"}, "system:kube-proxy", nil)
	view.registered["w-2"] = false
	resp, err := call(w2, addr, c2.req)
	if err != nil {
		t.Fatal(err)
	}
	view.register("w-2")
	c = newCSRs(t, sg.Config, "system:node:w-1", []string{"system:nodes"}, "system:kube-proxy", nil)
	if err := prove(&c.req, append(resp.KubeletCert, c2.kubeletKey...)); err != nil {
		t.Fatal(err)
	}
	_, err = call(impostor, addr, c.req)
	wantRefusal(t, "another worker's credentials", err, "system:node:w-2's, not system:node:w-1")

	// w-1's certificate (public: it is shown in every TLS handshake) with
	// a proof made by another key.
	current, err := n.root.ReadFile(bootstrap.KubeletClientCert)
	if err != nil {
		t.Fatal(err)
	}
	c = newCSRs(t, sg.Config, "system:node:w-1", []string{"system:nodes"}, "system:kube-proxy", nil)
	if err := prove(&c.req, append(resp.KubeletCert, c2.kubeletKey...)); err != nil {
		t.Fatal(err)
	}
	c.req.CurrentCert = current[:strings.Index(string(current), "-----END CERTIFICATE-----")+len("-----END CERTIFICATE-----\n")]
	_, err = call(impostor, addr, c.req)
	wantRefusal(t, "w-1's certificate, another key", err, "does not verify with the current kubelet certificate's key")
}

func wantRefusal(t *testing.T, what string, err error, msg string) {
	t.Helper()
	var remote *peer.RemoteError
	if !errors.As(err, &remote) || remote.Code != peer.CodeRefused || !strings.Contains(remote.Message, msg) ||
		!strings.Contains(remote.Message, "kubectl delete node w-1") {
		t.Errorf("%s: %v, want a refusal saying %q", what, err, msg)
	}
}

// NodesInAPI reads the API server: a Node is registered once it exists.
func TestNodesInAPI(t *testing.T) {
	c := kubetest.Start(t)
	lookup := NodesInAPI(c.Root, bootstrap.SuperAdminKubeconfig)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if ok, err := lookup(ctx, "w-1"); ok || err != nil {
		t.Fatalf("before the Node exists: %v, %v", ok, err)
	}
	if _, err := c.Clientset(t).CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ok, err := lookup(ctx, "w-1"); !ok || err != nil {
		t.Errorf("after the Node exists: %v, %v", ok, err)
	}
}
