package seed

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// The platform's label set (docs/platform.md, "Labels and selectors").
const (
	plNamespace = "ecommerce"
	plApp       = "app"
	plComponent = "component"
	plName      = "app.kubernetes.io/name"
	plPartOf    = "app.kubernetes.io/part-of"
	plValue     = "ecommerce"
)

// plComponents are the values of the label component on the
// platform's pods (the runbooks' -l app=ecommerce,component=...).
var plComponents = []string{"backend", "frontend", "database", "cache", "monitoring"}

// plManifests are the embedded manifests of the platform: all but
// the cluster add-ons' files (CoreDNS, local-path, metrics-server), which
// keep their upstream labels.
func plManifests(t *testing.T) []Manifest {
	t.Helper()
	set, problems := Load(nil, "", Embedded(), testVars)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	addOn := map[string]bool{AddOnFile[AddOnDNS]: true, AddOnFile[AddOnStorage]: true, AddOnFile[AddOnMetrics]: true}
	var out []Manifest
	for _, m := range set.Manifests {
		if !addOn[m.File] {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		t.Fatal("no platform manifest")
	}
	return out
}

func plWhere(m Manifest) string {
	return fmt.Sprintf("%s:%d: %s %s", m.File, m.Line, m.Object.GetKind(), m.Object.GetName())
}

// plWorkload is a platform workload: its name and its pods' labels.
type plWorkload struct {
	object string
	labels labels.Set
}

func plIsWorkload(kind string) bool {
	return kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet"
}

// plStringMap reads a map of strings at fields of obj.
func plStringMap(t *testing.T, obj map[string]any, fields ...string) map[string]string {
	t.Helper()
	m, _, err := unstructured.NestedStringMap(obj, fields...)
	if err != nil {
		t.Errorf("%s: %v", strings.Join(fields, "."), err)
	}
	return m
}

// Every labels map of the platform (objects, pod templates, claim
// templates) carries app=ecommerce and names its workload with
// app.kubernetes.io/name, part of ecommerce.
func TestPlatformLabels(t *testing.T) {
	for _, m := range plManifests(t) {
		obj := m.Object.Object
		sets := map[string]map[string]string{"metadata.labels": m.Object.GetLabels()}
		if plIsWorkload(m.Object.GetKind()) {
			sets["spec.template.metadata.labels"] = plStringMap(t, obj, "spec", "template", "metadata", "labels")
		}
		claims, _, _ := unstructured.NestedSlice(obj, "spec", "volumeClaimTemplates")
		for i, c := range claims {
			c, _ := c.(map[string]any)
			sets[fmt.Sprintf("spec.volumeClaimTemplates[%d].metadata.labels", i)] = plStringMap(t, c, "metadata", "labels")
		}
		for at, l := range sets {
			if l[plApp] != plValue || l[plName] == "" || l[plPartOf] != plValue || l[plComponent] == "" {
				t.Errorf("%s: %s: want %s=%s, %s, %s and %s=%s, have %v", plWhere(m), at,
					plApp, plValue, plComponent, plName, plPartOf, plValue, l)
			}
		}
	}
}

// Every workload's pods carry the label set, and its selector is exactly
// app.kubernetes.io/name and app.kubernetes.io/part-of: the labels the
// pods of every earlier version of the manifests carry, so a workload
// replaced for a new selector adopts its old pods.
func TestPlatformWorkloadSelectors(t *testing.T) {
	var n int
	for _, m := range plManifests(t) {
		if !plIsWorkload(m.Object.GetKind()) {
			continue
		}
		n++
		if m.Object.GetNamespace() != plNamespace {
			t.Errorf("%s: in namespace %q, want %s", plWhere(m), m.Object.GetNamespace(), plNamespace)
		}
		tpl := plStringMap(t, m.Object.Object, "spec", "template", "metadata", "labels")
		if tpl[plApp] != plValue || !slices.Contains(plComponents, tpl[plComponent]) ||
			tpl[plName] != m.Object.GetName() || tpl[plPartOf] != plValue {
			t.Errorf("%s: template labels %v, want %s=%s, %s one of %v, %s=%s, %s=%s", plWhere(m), tpl,
				plApp, plValue, plComponent, plComponents, plName, m.Object.GetName(), plPartOf, plValue)
		}
		sel, _, _ := unstructured.NestedMap(m.Object.Object, "spec", "selector")
		want := map[string]any{"matchLabels": map[string]any{plName: m.Object.GetName(), plPartOf: plValue}}
		if !reflect.DeepEqual(sel, want) {
			t.Errorf("%s: selector %v, want exactly %v", plWhere(m), sel, want)
		}
	}
	if n == 0 {
		t.Fatal("no platform workload")
	}
}

// Every other selector of platform pods (Services, PodDisruptionBudgets,
// NetworkPolicies and their peers, spread constraints, affinities)
// selects on exactly app.kubernetes.io/name and part-of, and matches the
// pods of a workload of the set. podSelector: {} (every pod) and peers in
// other namespaces (CoreDNS) are left alone.
func TestPlatformSelectorsMatchWorkloads(t *testing.T) {
	ms := plManifests(t)
	var workloads []plWorkload
	for _, m := range ms {
		if plIsWorkload(m.Object.GetKind()) {
			workloads = append(workloads, plWorkload{plWhere(m), plStringMap(t, m.Object.Object, "spec", "template", "metadata", "labels")})
		}
	}
	check := func(m Manifest, at string, sel labels.Selector, keys []string) {
		t.Helper()
		if want := []string{plName, plPartOf}; !slices.Equal(keys, want) {
			t.Errorf("%s: %s selects on %v, want exactly %v", plWhere(m), at, keys, want)
		}
		for _, w := range workloads {
			if sel.Matches(w.labels) {
				return
			}
		}
		t.Errorf("%s: %s %s matches the pods of no workload", plWhere(m), at, sel)
	}
	var n int
	for _, m := range ms {
		if m.Object.GetKind() == "Service" {
			sel := plStringMap(t, m.Object.Object, "spec", "selector")
			if len(sel) > 0 {
				n++
				check(m, "spec.selector", labels.SelectorFromSet(sel), slices.Sorted(maps.Keys(sel)))
			}
			continue
		}
		switch m.Object.GetKind() {
		case "ConfigMap", "PersistentVolumeClaim":
			continue // data, and volumes: not pod selectors
		}
		plWalkSelectors(m.Object.Object, "", func(at string, ls map[string]any) {
			if at == ".spec.podSelector" && len(ls) == 0 {
				return // every pod of the namespace
			}
			var s metav1.LabelSelector
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ls, &s); err != nil {
				t.Errorf("%s: %s: %v", plWhere(m), at, err)
				return
			}
			if len(s.MatchExpressions) > 0 {
				t.Errorf("%s: %s has matchExpressions: platform selectors use matchLabels", plWhere(m), at)
			}
			sel, err := metav1.LabelSelectorAsSelector(&s)
			if err != nil {
				t.Errorf("%s: %s: %v", plWhere(m), at, err)
				return
			}
			n++
			check(m, at, sel, slices.Sorted(maps.Keys(s.MatchLabels)))
		})
	}
	if n == 0 {
		t.Fatal("no selector found")
	}
}

// plWalkSelectors calls fn with every LabelSelector of pods in v (the
// maps under the keys selector, podSelector and labelSelector), except a
// podSelector next to a namespaceSelector (pods of other namespaces).
func plWalkSelectors(v any, at string, fn func(at string, sel map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		_, otherNamespaces := v["namespaceSelector"]
		for _, k := range slices.Sorted(maps.Keys(v)) {
			sub := at + "." + k
			switch k {
			case "selector", "labelSelector", "podSelector":
				if k == "podSelector" && otherNamespaces {
					continue
				}
				if sel, ok := v[k].(map[string]any); ok {
					fn(sub, sel)
					continue
				}
			case "namespaceSelector", "volumeClaimTemplates":
				continue // namespaces; claims select volumes, not pods
			}
			plWalkSelectors(v[k], sub, fn)
		}
	case []any:
		for i, e := range v {
			plWalkSelectors(e, fmt.Sprintf("%s[%d]", at, i), fn)
		}
	}
}

// Prometheus finds its targets by the same labels: every pod selector of
// its Kubernetes service discovery selects on app.kubernetes.io/name and
// part-of and matches a workload's pods, and no relabelling reads the
// label app (app=ecommerce on every pod).
func TestPrometheusDiscoversByWorkloadLabels(t *testing.T) {
	ms := plManifests(t)
	var workloads []labels.Set
	var config string
	for _, m := range ms {
		if plIsWorkload(m.Object.GetKind()) {
			workloads = append(workloads, plStringMap(t, m.Object.Object, "spec", "template", "metadata", "labels"))
		}
		if m.Object.GetKind() == "ConfigMap" && m.Object.GetName() == "prometheus-config" {
			config, _, _ = unstructured.NestedString(m.Object.Object, "data", "prometheus.yml")
		}
	}
	var prom struct {
		ScrapeConfigs []struct {
			JobName             string `json:"job_name"`
			KubernetesSDConfigs []struct {
				Selectors []struct {
					Role  string `json:"role"`
					Label string `json:"label"`
				} `json:"selectors"`
			} `json:"kubernetes_sd_configs"`
			RelabelConfigs []struct {
				SourceLabels []string `json:"source_labels"`
			} `json:"relabel_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(config), &prom); err != nil || len(prom.ScrapeConfigs) == 0 {
		t.Fatalf("prometheus.yml: %v (%d scrape configs)", err, len(prom.ScrapeConfigs))
	}
	var n int
	for _, job := range prom.ScrapeConfigs {
		for _, sd := range job.KubernetesSDConfigs {
			for _, s := range sd.Selectors {
				if s.Role != "pod" || s.Label == "" {
					continue
				}
				n++
				sel, err := labels.Parse(s.Label)
				if err != nil {
					t.Errorf("job %s: selector %q: %v", job.JobName, s.Label, err)
					continue
				}
				reqs, _ := sel.Requirements()
				var keys []string
				for _, r := range reqs {
					keys = append(keys, r.Key())
				}
				slices.Sort(keys)
				if !slices.Equal(keys, []string{plName, plPartOf}) {
					t.Errorf("job %s: selector %q selects on %v, want %s and %s", job.JobName, s.Label, keys, plName, plPartOf)
				}
				if !slices.ContainsFunc(workloads, func(w labels.Set) bool { return sel.Matches(w) }) {
					t.Errorf("job %s: selector %q matches the pods of no workload", job.JobName, s.Label)
				}
			}
		}
		for _, r := range job.RelabelConfigs {
			if slices.Contains(r.SourceLabels, "__meta_kubernetes_pod_label_app") {
				t.Errorf("job %s reads the pod label app, which is ecommerce on every platform pod: read __meta_kubernetes_pod_label_app_kubernetes_io_name", job.JobName)
			}
		}
	}
	if n == 0 {
		t.Error("no pod selector in prometheus.yml")
	}
}
