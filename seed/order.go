package seed

import (
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// kindTiers is the apply order, in the spirit of Helm's install order: what
// others need first, workloads after their configuration, what reacts to
// workloads after them, unknown kinds (custom resources) next, and admission
// webhooks and API services last, since they can block every later write.
// Kinds are "group/Kind" ("" is the core group).
var kindTiers = [][]string{
	{"/Namespace", "apiextensions.k8s.io/CustomResourceDefinition"},
	{"/ServiceAccount", "rbac.authorization.k8s.io/ClusterRole", "rbac.authorization.k8s.io/Role",
		"rbac.authorization.k8s.io/ClusterRoleBinding", "rbac.authorization.k8s.io/RoleBinding"},
	{"/ConfigMap", "/Secret"},
	{"scheduling.k8s.io/PriorityClass"},
	{"/ResourceQuota", "/LimitRange"},
	{"storage.k8s.io/StorageClass", "/PersistentVolume", "/PersistentVolumeClaim"},
	{"/Service"},
	{"apps/DaemonSet", "apps/Deployment", "apps/StatefulSet", "apps/ReplicaSet", "/ReplicationController",
		"/Pod", "batch/Job", "batch/CronJob"},
	{"policy/PodDisruptionBudget"},
	{"autoscaling/HorizontalPodAutoscaler"},
	{"networking.k8s.io/NetworkPolicy"},
	{"networking.k8s.io/IngressClass", "networking.k8s.io/Ingress"},
	nil, // everything else
	{"apiregistration.k8s.io/APIService",
		"admissionregistration.k8s.io/MutatingWebhookConfiguration",
		"admissionregistration.k8s.io/ValidatingWebhookConfiguration",
		"admissionregistration.k8s.io/ValidatingAdmissionPolicy",
		"admissionregistration.k8s.io/ValidatingAdmissionPolicyBinding",
		"admissionregistration.k8s.io/MutatingAdmissionPolicy",
		"admissionregistration.k8s.io/MutatingAdmissionPolicyBinding"},
}

var kindRank, otherRank = func() (map[string]int, int) {
	m := map[string]int{}
	other := 0
	for i, tier := range kindTiers {
		if tier == nil {
			other = i
		}
		for _, k := range tier {
			m[k] = i
		}
	}
	return m, other
}()

// rank is the tier of a kind in the apply order.
func rank(gk schema.GroupKind) int {
	if r, ok := kindRank[gk.Group+"/"+gk.Kind]; ok {
		return r
	}
	return otherRank
}

// isFoundation reports whether objects of gk are applied before every
// other: namespaces and CRDs.
func isFoundation(gk schema.GroupKind) bool { return rank(gk) == 0 }

func isCRD(gk schema.GroupKind) bool {
	return gk.Group == "apiextensions.k8s.io" && gk.Kind == "CustomResourceDefinition"
}

// ordered returns the manifests in apply order: by tier, then in the order
// of the set (file name, then position in the file).
func ordered(ms []Manifest) []Manifest {
	out := append([]Manifest(nil), ms...)
	sort.SliceStable(out, func(i, j int) bool {
		return rank(out[i].gvk().GroupKind()) < rank(out[j].gvk().GroupKind())
	})
	return out
}

// tiers returns the manifests in apply order, grouped by tier: a tier's
// objects may be applied together, a tier only after the one before it.
func tiers(ms []Manifest) [][]Manifest {
	var out [][]Manifest
	last := -1
	for _, m := range ordered(ms) {
		r := rank(m.gvk().GroupKind())
		if r != last {
			out = append(out, nil)
			last = r
		}
		out[len(out)-1] = append(out[len(out)-1], m)
	}
	return out
}

// hpaTargets returns the set keys of the Deployments and StatefulSets of
// the set that a HorizontalPodAutoscaler of the set scales: their
// spec.replicas is applied only when they are created.
func hpaTargets(ms []Manifest) map[string]bool {
	targets := map[string]bool{}
	for _, m := range ms {
		gk := m.gvk().GroupKind()
		if gk.Group != "autoscaling" || gk.Kind != "HorizontalPodAutoscaler" {
			continue
		}
		ref, ok, _ := unstructured.NestedMap(m.Object.Object, "spec", "scaleTargetRef")
		if !ok {
			continue
		}
		apiVersion, _ := ref["apiVersion"].(string)
		kind, _ := ref["kind"].(string)
		name, _ := ref["name"].(string)
		gv, err := schema.ParseGroupVersion(apiVersion)
		if err != nil || name == "" {
			continue
		}
		targets[setKey(schema.GroupKind{Group: gv.Group, Kind: kind}, namespaceOrDefault(m.Object.GetNamespace()), name)] = true
	}
	// Only the workloads that are in the set count.
	out := map[string]bool{}
	for _, m := range ms {
		gk := m.gvk().GroupKind()
		if gk.Group != "apps" || gk.Kind != "Deployment" && gk.Kind != "StatefulSet" {
			continue
		}
		k := setKey(gk, namespaceOrDefault(m.Object.GetNamespace()), m.Object.GetName())
		if targets[k] {
			out[k] = true
		}
	}
	return out
}

func namespaceOrDefault(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}
