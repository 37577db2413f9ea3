package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	authv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/integration/kubetest"
	"github.com/ecom-platform/ecom-agent/kubeclient"
)

// TestBootstrapRBACOnARealAPIServer: before the bootstrap RBAC, admin.conf
// and the agent's own kubeconfig authenticate but may do nothing; after
// it, both are cluster admins, kubelets may renew their client
// certificates, and a second run changes nothing.
func TestBootstrapRBACOnARealAPIServer(t *testing.T) {
	c := kubetest.Start(t)
	ctx := context.Background()

	if err := kubeclient.Readyz(ctx, c.AnonymousConfig()); err != nil {
		t.Fatalf("probeReadyz on a ready server: %v", err)
	}
	can := func(conf string, verb, resource string) bool {
		t.Helper()
		cs, err := kubernetes.NewForConfig(c.KubeconfigConfig(t, conf))
		if err != nil {
			t.Fatal(err)
		}
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authv1.SelfSubjectAccessReview{
			Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authv1.ResourceAttributes{Verb: verb, Resource: resource}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: access review: %v", conf, err)
		}
		return r.Status.Allowed
	}
	for _, conf := range []string{bootstrap.AdminKubeconfig, bootstrap.AgentKubeconfig} {
		if can(conf, "create", "deployments") {
			t.Fatalf("%s may create deployments before the bootstrap RBAC exists", conf)
		}
	}

	admin := c.Clientset(t)
	if err := bootstrapRBAC(ctx, admin); err != nil {
		t.Fatal(err)
	}
	for _, conf := range []string{bootstrap.AdminKubeconfig, bootstrap.AgentKubeconfig} {
		if !can(conf, "create", "deployments") || !can(conf, "create", "clusterrolebindings") {
			t.Errorf("%s is not a cluster admin after the bootstrap RBAC", conf)
		}
	}
	b, err := admin.RbacV1().ClusterRoleBindings().Get(ctx, "ecom-agent:node-autoapprove-certificate-rotation", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b.RoleRef.Name != "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient" || b.Subjects[0].Name != "system:nodes" {
		t.Errorf("kubelet certificate rotation binding: %+v %+v", b.RoleRef, b.Subjects)
	}
	// The network-policy engine runs as kube-proxy and reads what it
	// enforces from.
	for _, want := range []authv1.ResourceAttributes{
		{Verb: "list", Resource: "pods"}, {Verb: "watch", Resource: "pods"}, {Verb: "watch", Resource: "namespaces"},
		{Verb: "list", Group: "networking.k8s.io", Resource: "networkpolicies"}, {Verb: "get", Resource: "nodes", Name: "n1"},
	} {
		r, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authv1.SubjectAccessReview{Spec: authv1.SubjectAccessReviewSpec{
			User: "system:kube-proxy", Groups: []string{"system:authenticated"}, ResourceAttributes: &want,
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Status.Allowed {
			t.Errorf("system:kube-proxy may not %s %s: %s", want.Verb, want.Resource, r.Status.Reason)
		}
	}
	r, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authv1.SubjectAccessReview{Spec: authv1.SubjectAccessReviewSpec{
		User: "system:kube-proxy", Groups: []string{"system:authenticated"}, ResourceAttributes: &authv1.ResourceAttributes{Verb: "list", Resource: "secrets"},
	}}, metav1.CreateOptions{})
	if err != nil || r.Status.Allowed {
		t.Errorf("system:kube-proxy may list secrets (%v)", err)
	}
	rv := b.ResourceVersion
	if err := bootstrapRBAC(ctx, admin); err != nil {
		t.Fatal(err)
	}
	b, _ = admin.RbacV1().ClusterRoleBindings().Get(ctx, b.Name, metav1.GetOptions{})
	if b.ResourceVersion != rv {
		t.Errorf("a second bootstrap RBAC run changed %s (resourceVersion %s -> %s)", b.Name, rv, b.ResourceVersion)
	}

	c.Stop()
	if err := kubeclient.Readyz(ctx, c.AnonymousConfig()); err == nil || !strings.Contains(err.Error(), "/readyz") {
		t.Errorf("probeReadyz on a stopped server: %v", err)
	}
}

func TestProbeReadyzNamesTheFailingChecks(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || r.URL.RawQuery != "verbose" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, "[+]ping ok\n[-]etcd failed: reason withheld\n[-]informer-sync failed: reason withheld\n[+]log ok\n"+
			"[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n[-]autoregister-completion failed: reason withheld\nreadyz check failed\n")
	}))
	defer srv.Close()
	err := kubeclient.Readyz(context.Background(), &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	want := "/readyz 500, failing: etcd, informer-sync, poststarthook/rbac/bootstrap-roles, and 1 more"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}
