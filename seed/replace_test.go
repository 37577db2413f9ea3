package seed

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ecom-platform/ecom-agent/integration/kubetest"
)

const replaceNS = "shop-replace"

// replaceSet is a Deployment (scaled by an HPA) and a StatefulSet with a
// claim template, labelled with labels and selected by selector (flow
// maps).
func replaceSet(labels, selector string) mapFS {
	return mapFS{
		"00-ns.yaml": {Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + replaceNS + "\n")},
		"10-web.yaml": {Data: fmt.Appendf(nil, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s}
spec:
  replicas: 2
  selector: {matchLabels: %[3]s}
  template:
    metadata: {labels: %[2]s}
    spec:
      containers: [{name: web, image: ecom-agent.local/echo:1.0}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: %[1]s}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 6
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}}]
`, replaceNS, labels, selector)},
		"20-db.yaml": {Data: fmt.Appendf(nil, `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: %[1]s}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: %[3]s}
  template:
    metadata: {labels: %[2]s}
    spec:
      containers: [{name: db, image: ecom-agent.local/echo:1.0, volumeMounts: [{name: data, mountPath: /data}]}]
  volumeClaimTemplates:
    - metadata: {name: data}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
`, replaceNS, labels, selector)},
	}
}

// A workload whose selector changed is replaced without losing what runs:
// against the real kube-apiserver and kube-controller-manager (garbage
// collector, Deployment, ReplicaSet and StatefulSet controllers), the new
// Deployment adopts the old ReplicaSet and keeps its pods, the new
// StatefulSet adopts its pod and the claim stays, the HPA's scale is
// kept; a selector that would not adopt the running pods is refused.
func TestReplaceOnSelectorChange(t *testing.T) {
	c := kubetest.Start(t, kubetest.WithControllerManager("serviceaccount", "garbagecollector", "deployment", "replicaset", "statefulset"))
	cs := c.Clientset(t)
	vars := VarsOf(c.Config)
	var guard func() error
	apply := func(files mapFS, prev *Report) *Report {
		t.Helper()
		set, problems := Load(nil, "", files, vars)
		if len(problems) > 0 {
			t.Fatal(problems)
		}
		rep, err := Apply(ctxFor(t, 3*time.Minute), c.Admin, set, prev, ApplyOptions{Seeder: "test", Log: testLog(t), Guard: guard})
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		return &rep
	}

	oldLabels := "{app: web, component: backend, app.kubernetes.io/name: web, app.kubernetes.io/part-of: shop}"
	oldSel := "{app: web, component: backend}"
	rep := apply(replaceSet(oldLabels, oldSel), nil)
	if rep.Counts[Created] != 4 {
		t.Fatalf("first pass: %v", results(rep))
	}
	// What the controllers made of the first set: a ReplicaSet with two
	// pods, the pod db-0 and its claim.
	var oldRS appsv1.ReplicaSet
	eventually(t, "the first ReplicaSet and db-0 with its claim", func() error {
		rss, err := cs.AppsV1().ReplicaSets(replaceNS).List(t.Context(), metav1.ListOptions{})
		if err != nil || len(rss.Items) != 1 {
			return fmt.Errorf("ReplicaSets: %v %v", rss, err)
		}
		oldRS = rss.Items[0]
		if _, err := cs.CoreV1().Pods(replaceNS).Get(t.Context(), "db-0", metav1.GetOptions{}); err != nil {
			return err
		}
		_, err = cs.CoreV1().PersistentVolumeClaims(replaceNS).Get(t.Context(), "data-db-0", metav1.GetOptions{})
		return err
	})
	pod0, _ := cs.CoreV1().Pods(replaceNS).Get(t.Context(), "db-0", metav1.GetOptions{})
	pvc0, _ := cs.CoreV1().PersistentVolumeClaims(replaceNS).Get(t.Context(), "data-db-0", metav1.GetOptions{})
	web0, _ := cs.AppsV1().Deployments(replaceNS).Get(t.Context(), "web", metav1.GetOptions{})
	db0, _ := cs.AppsV1().StatefulSets(replaceNS).Get(t.Context(), "db", metav1.GetOptions{})
	// The HPA scales web to 3 (no metrics here: done by hand, as its
	// controller would, through the scale subresource).
	scale, err := cs.AppsV1().Deployments(replaceNS).GetScale(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 3
	if _, err := cs.AppsV1().Deployments(replaceNS).UpdateScale(t.Context(), "web", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The seeds' label set: app is now the platform's name, and the
	// selectors are on the labels the old pods carry too.
	newLabels := "{app: shop, component: backend, app.kubernetes.io/name: web, app.kubernetes.io/part-of: shop}"
	newSel := "{app.kubernetes.io/name: web, app.kubernetes.io/part-of: shop}"
	// Their controllers write the objects between the seeder's read and
	// its delete (seen in CI: the Deployment's status): the guard, called
	// just before each write, does the same to both, twice, so that each
	// deletion is refused on its resourceVersion at least once.
	var bumps atomic.Int32
	guard = func() error {
		if bumps.Add(1) > 2 {
			return nil
		}
		patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{"test/bump":"%d"}}}`, bumps.Load()))
		_, _ = cs.AppsV1().Deployments(replaceNS).Patch(t.Context(), "web", types.MergePatchType, patch, metav1.PatchOptions{})
		_, _ = cs.AppsV1().StatefulSets(replaceNS).Patch(t.Context(), "db", types.MergePatchType, patch, metav1.PatchOptions{})
		return nil
	}
	rep = apply(replaceSet(newLabels, newSel), rep)
	guard = nil
	got := results(rep)
	for _, k := range []string{key("Deployment", replaceNS, "web"), key("StatefulSet", replaceNS, "db")} {
		if got[k] != Replaced {
			t.Errorf("%s: %q, want %q", k, got[k], Replaced)
		}
	}
	web, err := cs.AppsV1().Deployments(replaceNS).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	db, err := cs.AppsV1().StatefulSets(replaceNS).Get(t.Context(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if web.UID == web0.UID || db.UID == db0.UID {
		t.Fatal("not replaced: same UIDs")
	}
	if *web.Spec.Replicas != 3 {
		t.Errorf("web has %d replicas after the replacement, want the HPA's 3", *web.Spec.Replicas)
	}
	if web.Spec.Template.Labels["app"] != "shop" || db.Spec.Template.Labels["app"] != "shop" {
		t.Errorf("new templates not applied: %v, %v", web.Spec.Template.Labels, db.Spec.Template.Labels)
	}
	// Adopted, not recreated: the old ReplicaSet (and so its pods) and
	// db-0 now belong to the new objects; the claim is the same one.
	eventually(t, "the old ReplicaSet and db-0 adopted", func() error {
		rs, err := cs.AppsV1().ReplicaSets(replaceNS).Get(t.Context(), oldRS.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if rs.UID != oldRS.UID || !ownedBy(rs.OwnerReferences, web.UID) {
			return fmt.Errorf("ReplicaSet %s: uid %s owners %v", rs.Name, rs.UID, rs.OwnerReferences)
		}
		pod, err := cs.CoreV1().Pods(replaceNS).Get(t.Context(), "db-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !ownedBy(pod.OwnerReferences, db.UID) {
			return fmt.Errorf("db-0: uid %s (was %s) owners %v", pod.UID, pod0.UID, pod.OwnerReferences)
		}
		return nil
	})
	if pvc, err := cs.CoreV1().PersistentVolumeClaims(replaceNS).Get(t.Context(), "data-db-0", metav1.GetOptions{}); err != nil || pvc.UID != pvc0.UID {
		t.Errorf("the claim data-db-0 was not kept: %v", err)
	}
	// The Deployment rolls to a second ReplicaSet of the new template.
	eventually(t, "a ReplicaSet of the new template", func() error {
		return newReplicaSet(t, cs, web.UID, oldRS.UID)
	})

	// Nothing to do on the next pass.
	rep = apply(replaceSet(newLabels, newSel), rep)
	if rep.Counts[Replaced]+rep.Counts[Created]+rep.Counts[Failed] != 0 {
		t.Errorf("second pass: %v", results(rep))
	}

	// A selector the running pods do not match is refused, and the
	// Deployment stays.
	rep = apply(replaceSet(newLabels, "{app.kubernetes.io/name: other}"), rep)
	if r := results(rep)[key("Deployment", replaceNS, "web")]; !strings.HasPrefix(r, Failed+": spec.selector changed") ||
		!strings.Contains(r, "does not select the running pods") {
		t.Errorf("non-adopting selector: %q", r)
	}
	if w, err := cs.AppsV1().Deployments(replaceNS).Get(t.Context(), "web", metav1.GetOptions{}); err != nil || w.UID != web.UID {
		t.Errorf("the Deployment was touched: %v", err)
	}
}

func ownedBy(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.UID == uid && r.Controller != nil && *r.Controller {
			return true
		}
	}
	return false
}

// newReplicaSet finds a ReplicaSet other than old owned by the Deployment
// uid whose template carries the new labels.
func newReplicaSet(t *testing.T, cs kubernetes.Interface, uid, old types.UID) error {
	rss, err := cs.AppsV1().ReplicaSets(replaceNS).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, rs := range rss.Items {
		if rs.UID != old && ownedBy(rs.OwnerReferences, uid) && rs.Spec.Template.Labels["app"] == "shop" {
			return nil
		}
	}
	return fmt.Errorf("no new ReplicaSet among %d", len(rss.Items))
}

// eventually calls f every 250 ms until it returns nil, at most 60 s.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 60s: %v", what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
