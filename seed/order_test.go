package seed

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestOrder(t *testing.T) {
	docs := []string{
		"autoscaling.k8s.io/v1 VerticalPodAutoscaler vpa",
		"admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration hook",
		"networking.k8s.io/v1 NetworkPolicy np",
		"autoscaling/v2 HorizontalPodAutoscaler hpa",
		"policy/v1 PodDisruptionBudget pdb",
		"apps/v1 Deployment deploy",
		"v1 Service svc",
		"v1 PersistentVolumeClaim pvc",
		"v1 LimitRange lr",
		"v1 ResourceQuota rq",
		"scheduling.k8s.io/v1 PriorityClass pc",
		"v1 Secret secret",
		"v1 ConfigMap cm",
		"rbac.authorization.k8s.io/v1 RoleBinding rb",
		"v1 ServiceAccount sa",
		"example.com/v1 Widget widget",
		"apiextensions.k8s.io/v1 CustomResourceDefinition crd",
		"v1 Namespace ns",
		"apps/v1 StatefulSet sts",
		"apps/v1 DaemonSet ds",
		"example.com/v1 Service not-core", // a custom kind named like a core one
	}
	var text strings.Builder
	for _, d := range docs {
		f := strings.Fields(d)
		fmt.Fprintf(&text, "---\napiVersion: %s\nkind: %s\nmetadata:\n  name: %s\n", f[0], f[1], f[2])
	}
	set, problems := Load(nil, "", fstest.MapFS{"a.yaml": {Data: []byte(text.String())}}, testVars)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	var got []string
	for _, m := range ordered(set.Manifests) {
		got = append(got, m.Object.GetName())
	}
	want := []string{
		"crd", "ns", // file order within a tier
		"rb", "sa",
		"secret", "cm",
		"pc",
		"lr", "rq",
		"pvc",
		"svc",
		"deploy", "sts", "ds",
		"pdb",
		"hpa",
		"np",
		"vpa", "widget", "not-core",
		"hook",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}

	// The same order in tiers, a tier's objects together.
	var gotTiers [][]string
	for _, tier := range tiers(set.Manifests) {
		var names []string
		for _, m := range tier {
			names = append(names, m.Object.GetName())
		}
		gotTiers = append(gotTiers, names)
	}
	wantTiers := [][]string{
		{"crd", "ns"},
		{"rb", "sa"},
		{"secret", "cm"},
		{"pc"},
		{"lr", "rq"},
		{"pvc"},
		{"svc"},
		{"deploy", "sts", "ds"},
		{"pdb"},
		{"hpa"},
		{"np"},
		{"vpa", "widget", "not-core"},
		{"hook"},
	}
	if diff := cmp.Diff(wantTiers, gotTiers); diff != "" {
		t.Errorf("tiers (-want +got):\n%s", diff)
	}
	if got := tiers(nil); len(got) != 0 {
		t.Errorf("tiers(nil) = %v", got)
	}
}

func TestHPATargets(t *testing.T) {
	text := `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec: {replicas: 3}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec: {replicas: 1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker, namespace: shop}
spec: {replicas: 2}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
---
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: db, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: StatefulSet, name: db}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: other, namespace: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: not-in-set}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: wrong-ns, namespace: other}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: worker}
`
	set, problems := Load(nil, "", fstest.MapFS{"a.yaml": {Data: []byte(text)}}, testVars)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	got := hpaTargets(set.Manifests)
	want := map[string]bool{"apps/Deployment/shop/web": true, "apps/StatefulSet/default/db": true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
}

func TestParsePlaceholder(t *testing.T) {
	for _, tc := range []struct {
		in      string
		n       int
		ok, err bool
	}{
		{"ecom-agent:random:32", 32, true, false},
		{"ecom-agent:random:1", 1, true, false},
		{"ecom-agent:random:4096", 4096, true, false},
		{"ecom-agent:random:0", 0, true, true},
		{"ecom-agent:random:4097", 0, true, true},
		{"ecom-agent:random:", 0, true, true},
		{"ecom-agent:random:abc", 0, true, true},
		{"ecom-agent:random:032", 0, true, true},
		{"ecom-agent:random:+3", 0, true, true},
		{"ecom-agent:random:32 ", 0, true, true},
		{"password", 0, false, false},
		{" ecom-agent:random:32", 0, false, false},
		{"", 0, false, false},
	} {
		n, ok, err := parsePlaceholder(tc.in)
		if n != tc.n || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("parsePlaceholder(%q) = %d, %v, %v", tc.in, n, ok, err)
		}
	}
}

func TestRandomString(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	for i := 0; i < 200; i++ {
		s := randomString(62)
		if len(s) != 62 {
			t.Fatalf("length %d", len(s))
		}
		if seen[s] {
			t.Fatal("repeated value")
		}
		seen[s] = true
		for _, r := range s {
			if !strings.ContainsRune(alphanumeric, r) {
				t.Fatalf("not alphanumeric: %q", r)
			}
			counts[r]++
		}
	}
	if len(counts) != 62 {
		t.Errorf("only %d distinct characters in 12400", len(counts))
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestPrepareSecret(t *testing.T) {
	secret := func() *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret",
			"metadata": map[string]any{"name": "s"},
			"data": map[string]any{
				"plain-data":  b64("from data"),
				"gen-data":    b64("ecom-agent:random:16"),
				"overwritten": b64("data loses"),
			},
			"stringData": map[string]any{
				"user":        "admin",
				"password":    "ecom-agent:random:32",
				"overwritten": "stringData wins",
			},
		}}
	}
	decode := func(obj *unstructured.Unstructured) map[string]string {
		out := map[string]string{}
		for k, v := range obj.Object["data"].(map[string]any) {
			b, err := base64.StdEncoding.DecodeString(v.(string))
			if err != nil {
				t.Fatal(err)
			}
			out[k] = string(b)
		}
		return out
	}

	first := secret()
	generated, err := prepareSecret(first, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"gen-data", "password"}, generated); diff != "" {
		t.Errorf("generated keys (-want +got):\n%s", diff)
	}
	if _, ok := first.Object["stringData"]; ok {
		t.Error("stringData kept")
	}
	d := decode(first)
	if d["user"] != "admin" || d["plain-data"] != "from data" || d["overwritten"] != "stringData wins" {
		t.Errorf("plain values: %v", d)
	}
	if len(d["password"]) != 32 || len(d["gen-data"]) != 16 || strings.HasPrefix(d["password"], RandomPrefix) {
		t.Errorf("generated values have wrong lengths")
	}

	// A later pass reuses the live values, also for keys the admin
	// rotated; a key missing from the live Secret gets a new value.
	live := first.DeepCopy()
	liveData := live.Object["data"].(map[string]any)
	liveData["password"] = b64("rotated-by-admin")
	delete(liveData, "gen-data")
	second := secret()
	generated, err = prepareSecret(second, live)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"gen-data"}, generated); diff != "" {
		t.Errorf("generated keys on the second pass (-want +got):\n%s", diff)
	}
	d2 := decode(second)
	if d2["password"] != "rotated-by-admin" {
		t.Errorf("live value not reused")
	}
	if len(d2["gen-data"]) != 16 || d2["gen-data"] == d["gen-data"] {
		t.Errorf("missing live key not regenerated")
	}

	// An invalid placeholder is an error that does not show the value.
	bad := secret()
	bad.Object["stringData"].(map[string]any)["password"] = "ecom-agent:random:x"
	if _, err := prepareSecret(bad, nil); err == nil || !strings.Contains(err.Error(), `"password"`) {
		t.Errorf("invalid placeholder: %v", err)
	}
}

func TestNeedsRetry(t *testing.T) {
	for _, tc := range []struct {
		objs []Object
		want bool
	}{
		{[]Object{{Result: Unchanged}, {Result: Created}, {Result: Pruned}}, false},
		{[]Object{{Result: Unchanged}, {Result: Failed}}, true},
		{[]Object{{Result: Skipped, Reason: notServed(schemaGVK("autoscaling.k8s.io/v1", "VerticalPodAutoscaler"))}}, true},
		{[]Object{{Result: Skipped, Reason: notPrunedReason}}, false},
	} {
		if got := (&Report{Objects: tc.objs}).NeedsRetry(); got != tc.want {
			t.Errorf("NeedsRetry(%v) = %v", tc.objs, got)
		}
	}
	if got := notServed(schemaGVK("autoscaling.k8s.io/v1", "VerticalPodAutoscaler")); got != "kind VerticalPodAutoscaler (autoscaling.k8s.io/v1) is not served: install its CRD" {
		t.Errorf("reason: %s", got)
	}
}

func schemaGVK(apiVersion, kind string) schema.GroupVersionKind {
	return schema.FromAPIVersionAndKind(apiVersion, kind)
}
