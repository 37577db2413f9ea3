package seed

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/integration/kubetest"
)

// One API server serves every integration check: starting it is the slow
// part. The checks run in order and each uses its own namespace.
func TestAPIServer(t *testing.T) {
	c := kubetest.Start(t)
	e := &env{
		cfg:  c.Admin,
		cs:   c.Clientset(t),
		vars: VarsOf(c.Config),
	}
	var err error
	if e.dyn, err = dynamic.NewForConfig(c.Admin); err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.Admin)
	if err != nil {
		t.Fatal(err)
	}
	e.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))

	t.Run("EmbeddedSet", e.testEmbeddedSet)
	t.Run("SmallSet", e.testSmallSet)
	t.Run("HPAAddedLater", e.testHPAAddedLater)
	t.Run("MalformedFileInDir", e.testMalformedFileInDir)
	t.Run("Prune", e.testPrune)
	t.Run("TwoSeeders", e.testTwoSeeders)
	t.Run("RunRetriesSkipped", e.testRunRetriesSkipped)
}

type env struct {
	cfg    *rest.Config
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	vars   Vars

	small *Report // the small set's last report, for the next checks
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (e *env) load(t *testing.T, root *hostfs.Root, embedded mapFS) *Set {
	t.Helper()
	set, _ := Load(root, "", embedded, e.vars)
	return set
}

type mapFS = fstest.MapFS

func (e *env) apply(t *testing.T, set *Set, prev *Report) *Report {
	t.Helper()
	start := time.Now()
	rep, err := Apply(ctxFor(t, 90*time.Second), e.cfg, set, prev, ApplyOptions{Seeder: "test", Log: testLog(t)})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Logf("pass: %v in %s", rep.Counts, time.Since(start).Round(time.Millisecond))
	return &rep
}

func key(kind, ns, name string) string { return Ref{Kind: kind, Namespace: ns, Name: name}.String() }

// results maps "Kind ns/name" to "result" or "result: reason".
func results(rep *Report) map[string]string {
	out := map[string]string{}
	for _, o := range rep.Objects {
		v := o.Result
		if o.Reason != "" {
			v += ": " + o.Reason
		}
		out[o.String()] = v
	}
	return out
}

func (e *env) get(t *testing.T, apiVersion, kind, ns, name string) (*unstructured.Unstructured, error) {
	t.Helper()
	gvk := schema.FromAPIVersionAndKind(apiVersion, kind)
	m, err := e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		e.mapper.Reset()
		if m, err = e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return nil, err
		}
	}
	var ri dynamic.ResourceInterface = e.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = e.dyn.Resource(m.Resource).Namespace(ns)
	}
	return ri.Get(ctxFor(t, 10*time.Second), name, metav1.GetOptions{})
}

func (e *env) mustGet(t *testing.T, apiVersion, kind, ns, name string) *unstructured.Unstructured {
	t.Helper()
	obj, err := e.get(t, apiVersion, kind, ns, name)
	if err != nil {
		t.Fatalf("get %s %s/%s: %v", kind, ns, name, err)
	}
	return obj
}

// resourceVersions reads the live resourceVersion of every object the
// report applied.
func (e *env) resourceVersions(t *testing.T, rep *Report) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range rep.Objects {
		if o.Result == Skipped || o.Result == Failed || o.Result == Pruned {
			continue
		}
		out[o.String()] = e.mustGet(t, o.APIVersion, o.Kind, o.Namespace, o.Name).GetResourceVersion()
	}
	return out
}

// checkOurs checks that every applied object carries our label and
// annotation, and that nothing failed.
func (e *env) checkOurs(t *testing.T, rep *Report) {
	t.Helper()
	for _, o := range rep.Objects {
		switch o.Result {
		case Failed:
			t.Errorf("%s (%s:%d) failed: %s", o, o.File, o.Line, o.Reason)
		case Skipped, Pruned:
		default:
			obj := e.mustGet(t, o.APIVersion, o.Kind, o.Namespace, o.Name)
			if obj.GetLabels()[ManagedByLabel] != ManagedByValue || obj.GetAnnotations()[ManifestAnnotation] != o.File {
				t.Errorf("%s: label %q annotation %q", o, obj.GetLabels()[ManagedByLabel], obj.GetAnnotations()[ManifestAnnotation])
			}
		}
	}
}

// checkNoop re-applies set and checks that nothing changed.
func (e *env) checkNoop(t *testing.T, set *Set, prev *Report) *Report {
	t.Helper()
	before := e.resourceVersions(t, prev)
	rep := e.apply(t, set, prev)
	for _, o := range rep.Objects {
		if o.Result != Unchanged && o.Result != Skipped {
			t.Errorf("re-apply: %s: %s %s", o, o.Result, o.Reason)
		}
	}
	if after := e.resourceVersions(t, rep); !mapsEqual(before, after) {
		t.Errorf("re-apply changed resourceVersions:\nbefore %v\nafter  %v", before, after)
	}
	return rep
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// testEmbeddedSet applies the package's own manifests: everything applies
// or is skipped with a reason, nothing fails, and a second pass is a no-op.
func (e *env) testEmbeddedSet(t *testing.T) {
	set, problems := Load(nil, "", Embedded(), e.vars)
	for _, p := range problems {
		t.Errorf("problem: %s", p)
	}
	rep := e.apply(t, set, nil)
	if len(rep.Objects) != len(set.Manifests) {
		t.Errorf("%d objects in the report, %d in the set", len(rep.Objects), len(set.Manifests))
	}
	for _, o := range rep.Objects {
		switch o.Result {
		case Created:
		case Skipped:
			if o.Reason == "" {
				t.Errorf("%s skipped without a reason", o)
			}
			t.Logf("skipped: %s: %s", o, o.Reason)
		default:
			t.Errorf("%s (%s:%d): %s %s", o, o.File, o.Line, o.Result, o.Reason)
		}
	}
	e.checkOurs(t, rep)
	e.checkNoop(t, set, rep)
}

const crdWidgets = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer}
`

const crdVPA = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: verticalpodautoscalers.autoscaling.k8s.io
  annotations:
    api-approved.kubernetes.io: https://github.com/kubernetes/kubernetes/pull/63797
spec:
  group: autoscaling.k8s.io
  scope: Namespaced
  names: {plural: verticalpodautoscalers, singular: verticalpodautoscaler, kind: VerticalPodAutoscaler, shortNames: [vpa]}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
`

var smallSet = mapFS{
	"00-namespace.yaml": {Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n")},
	"10-crd.yaml":       {Data: []byte(crdWidgets)},
	"20-config.yaml": {Data: []byte(`apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  namespace: shop
data:
  cluster: "@@CLUSTER_NAME@@"
  dns: "@@CLUSTER_DNS_IP@@"
`)},
	"21-secret.yaml": {Data: []byte(`apiVersion: v1
kind: Secret
metadata:
  name: app-secret
  namespace: shop
stringData:
  user: admin
  password: ecom-agent:random:32
data:
  token: ` + base64.StdEncoding.EncodeToString([]byte("ecom-agent:random:20")) + `
`)},
	"30-web.yaml": {Data: []byte(`apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: registry.example/web:1.0
          ports: [{containerPort: 8080}]
`)},
	"31-hpa.yaml": {Data: []byte(`apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: shop
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 6
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}
`)},
	"40-vpa.yaml": {Data: []byte(`apiVersion: autoscaling.k8s.io/v1
kind: VerticalPodAutoscaler
metadata:
  name: web
  namespace: shop
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  updatePolicy: {updateMode: "Off"}
`)},
	"50-widget.yaml": {Data: []byte("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: shop\nspec:\n  size: 3\n")},
}

var alnum = regexp.MustCompile(`^[A-Za-z0-9]+$`)

func (e *env) secretData(t *testing.T, ns, name string) map[string]string {
	t.Helper()
	s, err := e.cs.CoreV1().Secrets(ns).Get(ctxFor(t, 10*time.Second), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	return out
}

func (e *env) replicas(t *testing.T, ns, name string) int32 {
	t.Helper()
	d, err := e.cs.AppsV1().Deployments(ns).Get(ctxFor(t, 10*time.Second), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *d.Spec.Replicas
}

func (e *env) testSmallSet(t *testing.T) {
	vpaSkipped := "skipped: kind VerticalPodAutoscaler (autoscaling.k8s.io/v1) is not served: install its CRD"
	if _, err := e.cs.Discovery().ServerResourcesForGroupVersion("autoscaling.k8s.io/v1"); err == nil {
		t.Fatal("the VPA CRD is installed already")
	}
	set := e.load(t, nil, smallSet)
	if len(set.Problems) > 0 {
		t.Fatal(set.Problems)
	}

	// First pass: everything is created, the VPA is skipped.
	rep := e.apply(t, set, nil)
	want := map[string]string{
		key("Namespace", "", "shop"):                               Created,
		key("CustomResourceDefinition", "", "widgets.example.com"): Created,
		key("ConfigMap", "shop", "app-config"):                     Created,
		key("Secret", "shop", "app-secret"):                        Created,
		key("Service", "shop", "web"):                              Created,
		key("Deployment", "shop", "web"):                           Created,
		key("HorizontalPodAutoscaler", "shop", "web"):              Created,
		key("VerticalPodAutoscaler", "shop", "web"):                vpaSkipped,
		key("Widget", "shop", "w1"):                                Created,
	}
	if got := results(rep); !mapsEqual(want, got) {
		t.Fatalf("first pass:\nwant %v\ngot  %v", want, got)
	}
	if !rep.NeedsRetry() {
		t.Error("a skipped object must be retried")
	}
	e.checkOurs(t, rep)
	cm := e.mustGet(t, "v1", "ConfigMap", "shop", "app-config")
	if d := cm.Object["data"].(map[string]any); d["cluster"] != e.vars.ClusterName || d["dns"] != e.vars.ClusterDNSIP {
		t.Errorf("variables not substituted: %v", d)
	}
	if size, _, _ := unstructured.NestedInt64(e.mustGet(t, "example.com/v1", "Widget", "shop", "w1").Object, "spec", "size"); size != 3 {
		t.Errorf("widget size %d", size)
	}
	if r := e.replicas(t, "shop", "web"); r != 3 {
		t.Errorf("replicas %d after creation, want the manifest's 3", r)
	}
	if web := e.mustGet(t, "apps/v1", "Deployment", "shop", "web"); ownsField(web, FieldManager, "spec", "replicas") ||
		!ownsField(web, ReplicasFieldManager, "spec", "replicas") {
		t.Errorf("replicas of an HPA's target must be handed over: %v", web.GetManagedFields())
	}
	secret := e.secretData(t, "shop", "app-secret")
	if secret["user"] != "admin" || len(secret["password"]) != 32 || !alnum.MatchString(secret["password"]) ||
		len(secret["token"]) != 20 || !alnum.MatchString(secret["token"]) {
		t.Errorf("generated secret values: user %q, password %d chars, token %d chars", secret["user"], len(secret["password"]), len(secret["token"]))
	}

	// Second pass: a no-op.
	rep = e.checkNoop(t, set, rep)

	// An admin labels the ConfigMap and edits a field we own, with
	// other field managers; the HPA scales the Deployment.
	ctx := ctxFor(t, 30*time.Second)
	live, err := e.cs.CoreV1().ConfigMaps("shop").Get(ctx, "app-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	live.Labels["team"] = "payments"
	live.Annotations["note"] = "added by hand"
	live.Data["cluster"] = "edited"
	live.Data["extra"] = "admin's key"
	if _, err := e.cs.CoreV1().ConfigMaps("shop").Update(ctx, live, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	scale, err := e.cs.AppsV1().Deployments("shop").GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 5
	if _, err := e.cs.AppsV1().Deployments("shop").UpdateScale(ctx, "web", scale, metav1.UpdateOptions{FieldManager: "horizontal-pod-autoscaler"}); err != nil {
		t.Fatal(err)
	}

	rep = e.apply(t, set, rep)
	want[key("ConfigMap", "shop", "app-config")] = Configured
	for k := range want {
		if k != key("ConfigMap", "shop", "app-config") && k != key("VerticalPodAutoscaler", "shop", "web") {
			want[k] = Unchanged
		}
	}
	if got := results(rep); !mapsEqual(want, got) {
		t.Errorf("after the admin's edits:\nwant %v\ngot  %v", want, got)
	}
	after, err := e.cs.CoreV1().ConfigMaps("shop").Get(ctx, "app-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.Labels["team"] != "payments" || after.Annotations["note"] != "added by hand" || after.Data["extra"] != "admin's key" {
		t.Errorf("the admin's fields did not survive: labels %v annotations %v data %v", after.Labels, after.Annotations, after.Data)
	}
	if after.Data["cluster"] != e.vars.ClusterName {
		t.Errorf("a field we own was not taken back: %q", after.Data["cluster"])
	}
	if r := e.replicas(t, "shop", "web"); r != 5 {
		t.Errorf("replicas %d after a re-seed, want the HPA's 5", r)
	}
	if got := e.secretData(t, "shop", "app-secret"); !mapsEqual(secret, got) {
		t.Error("a re-seed changed the generated secret values")
	}
	rep = e.checkNoop(t, set, rep)

	// A deleted Secret gets new values.
	if err := e.cs.CoreV1().Secrets("shop").Delete(ctx, "app-secret", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rep = e.apply(t, set, rep)
	if r := results(rep)[key("Secret", "shop", "app-secret")]; r != Created {
		t.Errorf("deleted secret: %s", r)
	}
	if fresh := e.secretData(t, "shop", "app-secret"); fresh["password"] == secret["password"] || len(fresh["password"]) != 32 {
		t.Error("a recreated secret must get a new generated value")
	}

	// The VPA's CRD appears: the next pass applies the VPA.
	crdSet := e.load(t, nil, mapFS{"vpa-crd.yaml": {Data: []byte(crdVPA)}})
	if r := e.apply(t, crdSet, nil); r.Objects[0].Result != Created {
		t.Fatalf("install the VPA CRD: %v", results(r))
	}
	rep = e.apply(t, set, rep)
	if r := results(rep)[key("VerticalPodAutoscaler", "shop", "web")]; r != Created {
		t.Errorf("VPA once its CRD exists: %s", r)
	}
	if rep.NeedsRetry() {
		t.Errorf("nothing left to retry: %v", results(rep))
	}
	e.checkOurs(t, rep)
	e.small = e.checkNoop(t, set, rep)
}

// testMalformedFileInDir: a file of the directory that does not parse is
// reported with its file and line, the others apply, and nothing is pruned
// meanwhile.
func (e *env) testMalformedFileInDir(t *testing.T) {
	if e.small == nil {
		t.Skip("needs SmallSet")
	}
	root, err := hostfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		if _, err := root.WriteFile(ManifestsDir+"/"+name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The small set loses its web file (an override of 30-web.yaml that
	// is broken) and gains a good file.
	write("30-web.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  ports: [{port: 80\n")
	write("60-more.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: more\n  namespace: shop\ndata: {a: b}\n")
	set := e.load(t, root, smallSet)
	rep := e.apply(t, set, e.small)
	if len(rep.Problems) != 1 || rep.Problems[0].File != "30-web.yaml" || rep.Problems[0].Line != 7 {
		t.Fatalf("problems: %v", rep.Problems)
	}
	t.Logf("problem: %s", rep.Problems[0])
	if r := results(rep)[key("ConfigMap", "shop", "more")]; r != Created {
		t.Errorf("the good file: %s", r)
	}
	for _, o := range rep.Objects {
		if o.Result != Unchanged && o.Result != Created {
			t.Errorf("%s: %s %s", o, o.Result, o.Reason)
		}
	}
	// The Deployment and Service of the broken file are neither pruned nor
	// forgotten.
	e.mustGet(t, "apps/v1", "Deployment", "shop", "web")
	e.mustGet(t, "v1", "Service", "shop", "web")
	for _, k := range []string{key("Deployment", "shop", "web"), key("Service", "shop", "web")} {
		if !slices.ContainsFunc(rep.Inventory, func(r Ref) bool { return r.String() == k }) {
			t.Errorf("%s left the inventory", k)
		}
	}
}

func (e *env) testPrune(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	cmDoc := func(name string) string {
		return fmt.Sprintf("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: prune\ndata: {a: b}\n", name)
	}
	full := mapFS{
		"00-ns.yaml":     {Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prune\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: prune-gone\n")},
		"10-crd.yaml":    {Data: []byte(strings.ReplaceAll(strings.ReplaceAll(crdWidgets, "widget", "gadget"), "Widget", "Gadget"))},
		"20-keep.yaml":   {Data: []byte(cmDoc("keep") + cmDoc("gone-ours") + cmDoc("gone-unlabelled"))},
		"21-secret.yaml": {Data: []byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: gone-secret\n  namespace: prune\nstringData: {k: v}\n")},
	}
	rep := e.apply(t, e.load(t, nil, full), nil)
	e.checkOurs(t, rep)

	// An admin takes one ConfigMap over: our label is removed.
	live, err := e.cs.CoreV1().ConfigMaps("prune").Get(ctx, "gone-unlabelled", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	delete(live.Labels, ManagedByLabel)
	if _, err := e.cs.CoreV1().ConfigMaps("prune").Update(ctx, live, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	// An object never ours, listed in a (tampered) inventory.
	if _, err := e.cs.CoreV1().ConfigMaps("prune").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "foreign", Namespace: "prune"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rep.Inventory = append(rep.Inventory, Ref{APIVersion: "v1", Kind: "ConfigMap", Namespace: "prune", Name: "foreign"})

	// The set shrinks to the namespace "prune" and one ConfigMap.
	small := mapFS{
		"00-ns.yaml":   {Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prune\n")},
		"20-keep.yaml": {Data: []byte(cmDoc("keep"))},
	}
	rep = e.apply(t, e.load(t, nil, small), rep)
	notOurs := "skipped: not pruned: the live object does not carry both the label app.kubernetes.io/managed-by=ecom-agent and the annotation ecom-agent.io/manifest"
	want := map[string]string{
		key("Namespace", "", "prune"):                              Unchanged,
		key("ConfigMap", "prune", "keep"):                          Unchanged,
		key("ConfigMap", "prune", "gone-ours"):                     Pruned,
		key("Secret", "prune", "gone-secret"):                      Pruned,
		key("ConfigMap", "prune", "gone-unlabelled"):               notOurs,
		key("ConfigMap", "prune", "foreign"):                       notOurs,
		key("Namespace", "", "prune-gone"):                         "skipped: " + notPrunedReason,
		key("CustomResourceDefinition", "", "gadgets.example.com"): "skipped: " + notPrunedReason,
	}
	if got := results(rep); !mapsEqual(want, got) {
		t.Errorf("prune pass:\nwant %v\ngot  %v", want, got)
	}
	for _, gone := range []string{"gone-ours"} {
		if _, err := e.cs.CoreV1().ConfigMaps("prune").Get(ctx, gone, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s not deleted: %v", gone, err)
		}
	}
	for _, kept := range []string{"keep", "gone-unlabelled", "foreign"} {
		if _, err := e.cs.CoreV1().ConfigMaps("prune").Get(ctx, kept, metav1.GetOptions{}); err != nil {
			t.Errorf("%s: %v", kept, err)
		}
	}
	if _, err := e.cs.CoreV1().Namespaces().Get(ctx, "prune-gone", metav1.GetOptions{}); err != nil {
		t.Errorf("namespace prune-gone: %v", err)
	}
	if _, err := e.get(t, "apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "gadgets.example.com"); err != nil {
		t.Errorf("CRD: %v", err)
	}
	if rep.NeedsRetry() {
		t.Error("objects not pruned on purpose must not cause retries")
	}
	var inv []string
	for _, r := range rep.Inventory {
		inv = append(inv, r.String())
	}
	if want := []string{key("ConfigMap", "prune", "keep"), key("Namespace", "", "prune")}; !slices.Equal(want, inv) {
		t.Errorf("inventory %v, want %v", inv, want)
	}
	// And the next pass has nothing to prune.
	e.checkNoop(t, e.load(t, nil, small), rep)
}

// testTwoSeeders runs two seeders against one API server: only one applies
// at a time, one change is applied once, and the other takes over when the
// leader stops.
func (e *env) testTwoSeeders(t *testing.T) {
	root, err := hostfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		if _, err := root.WriteFile(ManifestsDir+"/"+name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	embedded := mapFS{"00-ns.yaml": {Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: race\n")}}
	write("10-a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: race\n")

	var mu sync.Mutex
	leaders, maxLeaders := map[string]bool{}, 0
	var reports []Report
	reportCh := make(chan Report, 100)
	run := func(ctx context.Context, id string, done chan<- error) {
		done <- Run(ctx, Options{
			Config: e.cfg, Root: root, Embedded: embedded, Vars: e.vars, Identity: id,
			Log: testLog(t), Rescan: 200 * time.Millisecond,
			LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 300 * time.Millisecond,
			OnLeading: func(leading bool) {
				mu.Lock()
				defer mu.Unlock()
				leaders[id] = leading
				n := 0
				for _, l := range leaders {
					if l {
						n++
					}
				}
				maxLeaders = max(maxLeaders, n)
			},
			OnReport: func(r Report) {
				mu.Lock()
				reports = append(reports, r)
				mu.Unlock()
				reportCh <- r
			},
		})
	}
	ctx1, stop1 := context.WithCancel(t.Context())
	ctx2, stop2 := context.WithCancel(t.Context())
	defer stop1()
	defer stop2()
	done1, done2 := make(chan error, 1), make(chan error, 1)
	go run(ctx1, "cp-1", done1)
	go run(ctx2, "cp-2", done2)

	next := func(what string) Report {
		t.Helper()
		select {
		case r := <-reportCh:
			return r
		case <-time.After(20 * time.Second):
			t.Fatalf("no report: %s", what)
			return Report{}
		}
	}
	quiet := func(what string, d time.Duration) {
		t.Helper()
		select {
		case r := <-reportCh:
			t.Errorf("%s: unexpected pass by %s: %v", what, r.Seeder, r.Counts)
		case <-time.After(d):
		}
	}
	first := next("first pass")
	if first.Counts[Created] != 2 || len(first.Objects) != 2 {
		t.Errorf("first pass: %v", results(&first))
	}
	leader := first.Seeder
	quiet("nothing changed", 1500*time.Millisecond)

	// A change in the directory is applied once, within a few rescans.
	write("20-b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: race\n")
	changed := time.Now()
	second := next("change")
	if second.Seeder != leader || second.Hash == first.Hash || results(&second)[key("ConfigMap", "race", "b")] != Created {
		t.Errorf("second pass by %s: %v", second.Seeder, results(&second))
	}
	t.Logf("change applied after %s", time.Since(changed).Round(time.Millisecond))
	quiet("one change, one pass", 1500*time.Millisecond)

	// The leader stops: it releases the lease, the other takes over and
	// applies at once (a no-op).
	stopLeader, leaderDone, otherDone, stopOther := stop1, done1, done2, stop2
	if leader == "cp-2" {
		stopLeader, leaderDone, otherDone, stopOther = stop2, done2, done1, stop1
	}
	stopped := time.Now()
	stopLeader()
	if err := <-leaderDone; err != nil {
		t.Errorf("Run: %v", err)
	}
	third := next("takeover")
	if third.Seeder == leader || third.Counts[Unchanged] != 3 {
		t.Errorf("takeover pass by %s: %v", third.Seeder, results(&third))
	}
	t.Logf("takeover after %s", time.Since(stopped).Round(time.Millisecond))
	saved, err := LoadReport(ctxFor(t, 10*time.Second), e.cs)
	if err != nil || saved == nil || saved.Seeder != third.Seeder || saved.Hash != third.Hash {
		t.Errorf("saved report: %v, %+v", err, saved)
	}

	// Someone else takes the Lease: the seeder stops seeding at once
	// (within its renew deadline), and campaigns again; once the
	// intruder's lease expires it leads again and applies at once.
	ctx := ctxFor(t, 30*time.Second)
	lease, err := e.cs.CoordinationV1().Leases(LeaseNamespace).Get(ctx, LeaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	intruder, two := "intruder", int32(2)
	lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds = &intruder, &two
	lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	if _, err := e.cs.CoordinationV1().Leases(LeaseNamespace).Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	stolen := time.Now()
	for {
		mu.Lock()
		leading := leaders[third.Seeder]
		mu.Unlock()
		if !leading {
			break
		}
		if time.Since(stolen) > 5*time.Second {
			t.Fatal("the seeder kept leading on a stolen lease")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("stepped down %s after the lease was taken", time.Since(stolen).Round(time.Millisecond))
	fourth := next("after the intruder")
	if fourth.Seeder != third.Seeder || fourth.Counts[Unchanged] != 3 {
		t.Errorf("pass after the intruder by %s: %v", fourth.Seeder, results(&fourth))
	}
	if fourth.Started.Before(stolen.Add(2 * time.Second)) {
		t.Errorf("applied %s after the lease was taken, before the intruder's lease expired", fourth.Started.Sub(stolen))
	}
	stopOther()
	if err := <-otherDone; err != nil {
		t.Errorf("Run: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if maxLeaders != 1 {
		t.Errorf("%d seeders led at the same time", maxLeaders)
	}
	for i := 1; i < len(reports); i++ {
		if reports[i].Started.Before(reports[i-1].Finished) {
			t.Errorf("passes overlap: %s %s-%s and %s %s-%s", reports[i-1].Seeder, reports[i-1].Started, reports[i-1].Finished,
				reports[i].Seeder, reports[i].Started, reports[i].Finished)
		}
	}
	if len(reports) != 4 {
		t.Errorf("%d passes, want 4", len(reports))
	}
}

// testHPAAddedLater: a workload the seeder applied with its replicas gets an
// HPA; the replicas are handed over, not reset.
func (e *env) testHPAAddedLater(t *testing.T) {
	deploy := `apiVersion: v1
kind: Namespace
metadata:
  name: later
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: later
spec:
  replicas: 4
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers: [{name: api, image: registry.example/api:1.0}]
`
	hpa := `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: api
  namespace: later
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}
  minReplicas: 2
  maxReplicas: 8
`
	rep := e.apply(t, e.load(t, nil, mapFS{"a.yaml": {Data: []byte(deploy)}}), nil)
	api := e.mustGet(t, "apps/v1", "Deployment", "later", "api")
	if !ownsField(api, FieldManager, "spec", "replicas") {
		t.Fatal("without an HPA the seeder owns the replicas")
	}
	set := e.load(t, nil, mapFS{"a.yaml": {Data: []byte(deploy)}, "b.yaml": {Data: []byte(hpa)}})
	rep = e.apply(t, set, rep)
	if r := results(rep); r[key("Deployment", "later", "api")] != Configured || r[key("HorizontalPodAutoscaler", "later", "api")] != Created {
		t.Errorf("HPA added: %v", r)
	}
	api = e.mustGet(t, "apps/v1", "Deployment", "later", "api")
	if ownsField(api, FieldManager, "spec", "replicas") || e.replicas(t, "later", "api") != 4 {
		t.Errorf("replicas %d, owned by the seeder %v", e.replicas(t, "later", "api"), ownsField(api, FieldManager, "spec", "replicas"))
	}
	e.checkNoop(t, set, rep)
}

// testRunRetriesSkipped: Run's first pass prunes from the inventory saved by
// the previous seeders (TwoSeeders), skips a custom resource whose CRD is
// missing, and applies it within a rescan or two of the CRD's arrival.
func (e *env) testRunRetriesSkipped(t *testing.T) {
	embedded := mapFS{
		"00-ns.yaml":    {Data: []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: retry\n")},
		"10-gizmo.yaml": {Data: []byte("apiVersion: example.com/v1\nkind: Gizmo\nmetadata:\n  name: g1\n  namespace: retry\nspec: {size: 1}\n")},
	}
	reports := make(chan Report, 100)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Config: e.cfg, Embedded: embedded, Vars: e.vars, Identity: "cp-3", Log: testLog(t),
			Rescan:        200 * time.Millisecond,
			LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 300 * time.Millisecond,
			OnReport: func(r Report) { reports <- r },
		})
	}()
	next := func() Report {
		t.Helper()
		select {
		case r := <-reports:
			return r
		case <-time.After(20 * time.Second):
			t.Fatal("no report")
			return Report{}
		}
	}
	first := next()
	want := map[string]string{
		key("Namespace", "", "retry"): Created,
		key("Gizmo", "retry", "g1"):   "skipped: kind Gizmo (example.com/v1) is not served: install its CRD",
		key("ConfigMap", "race", "a"): Pruned,
		key("ConfigMap", "race", "b"): Pruned,
		key("Namespace", "", "race"):  "skipped: " + notPrunedReason,
	}
	if got := results(&first); !mapsEqual(want, got) {
		t.Errorf("first pass:\nwant %v\ngot  %v", want, got)
	}
	crd := strings.ReplaceAll(strings.ReplaceAll(crdWidgets, "widget", "gizmo"), "Widget", "Gizmo")
	if r := e.apply(t, e.load(t, nil, mapFS{"crd.yaml": {Data: []byte(crd)}}), nil); r.Objects[0].Result != Created {
		t.Fatalf("install the Gizmo CRD: %v", results(r))
	}
	installed := time.Now()
	for {
		r := next()
		if got := results(&r)[key("Gizmo", "retry", "g1")]; got == Created {
			t.Logf("applied %s after its CRD", time.Since(installed).Round(time.Millisecond))
			break
		}
		if time.Since(installed) > 10*time.Second {
			t.Fatal("the custom resource was not applied after its CRD appeared")
		}
	}
	e.mustGet(t, "example.com/v1", "Gizmo", "retry", "g1")
	// Nothing left to retry: no more passes.
	select {
	case r := <-reports:
		t.Errorf("unexpected pass: %v", results(&r))
	case <-time.After(time.Second):
	}
	stop()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
