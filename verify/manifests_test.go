package verify

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ecom-platform/ecom-agent/seed"
)

// The names the checks look for are the seeded manifests' names: a
// rename there fails here, not at 3 a.m.
func TestNamesAreTheSeededOnes(t *testing.T) {
	set, probs := seed.Load(nil, "", seed.Embedded(), seed.Vars{
		ClusterName: "shop", ClusterDomain: "shop.internal", ClusterDNSIP: "10.96.0.10", StorageDir: "/var/lib/ecom-agent-volumes", ImageRegistry: "ecom-agent.local", PodCIDR: "10.244.0.0/16"})
	if len(probs) > 0 {
		t.Fatalf("the embedded manifests do not load: %v", probs)
	}
	objects := map[string]map[string]any{}
	for _, m := range set.Manifests {
		objects[objectName(m.Object.GetKind(), m.Object.GetNamespace(), m.Object.GetName())] = m.Object.Object
	}
	get := func(kind, ns, name string, into any) bool {
		t.Helper()
		obj, ok := objects[objectName(kind, ns, name)]
		if !ok {
			t.Errorf("no %s in seed/manifests", objectName(kind, ns, name))
			return false
		}
		if into != nil {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, into); err != nil {
				t.Fatal(err)
			}
		}
		return true
	}
	for _, d := range [][2]string{{dnsNamespace, dnsDeployment}, {storageNamespace, storageDeployment}, {metricsNamespace, metricsDeployment}} {
		get("Deployment", d[0], d[1], nil)
	}
	get("APIService", "", metricsAPIService, nil)
	var cm corev1.ConfigMap
	if get("ConfigMap", dnsNamespace, dnsConfigMap, &cm) {
		if got := corefileDomain(cm.Data["Corefile"]); got != "shop.internal" {
			t.Errorf("the seeded Corefile's cluster domain reads as %q, want the config's shop.internal", got)
		}
	}
	get("Service", dnsNamespace, dnsService, nil)
	for _, name := range []string{backendService, frontendService} {
		var svc corev1.Service
		if !get("Service", platformNamespace, name, &svc) {
			continue
		}
		found := false
		for _, p := range svc.Spec.Ports {
			found = found || p.Name == httpPortName
		}
		if !found || len(svc.Spec.Selector) == 0 {
			t.Errorf("Service %s: no port named %q, or no selector: %+v", name, httpPortName, svc.Spec)
		}
	}
	var sts appsv1.StatefulSet
	if get("StatefulSet", platformNamespace, postgresSet, &sts) {
		p := corev1.Pod{Spec: sts.Spec.Template.Spec}
		if cmd := readinessCommand(&p, postgresContainer); len(cmd) < 2 || cmd[0] != "pg_isready" || &cmd[0] == &pgIsReady[0] {
			t.Errorf("container %s's readiness probe is not pg_isready: %v", postgresContainer, cmd)
		}
	}
}
