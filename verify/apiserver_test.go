package verify

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/integration/kubetest"
	"github.com/ecom-platform/ecom-agent/seed"
)

// verify against a real kube-apiserver (no controller manager, scheduler
// or kubelet: the objects' states are what the test writes), through the
// rendered admin.conf: each check names the object at fault and why, the
// add-ons that are not there are skipped, and every request verify made
// was a get or a list.
func TestAgainstAPIServer(t *testing.T) {
	c := kubetest.Start(t)
	cs := c.Clientset(t)
	s := seeder{t: t, cs: cs}
	// admin.conf's group is cluster-admin, as the agent binds it.
	s.create(&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:cluster-admins"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "kubeadm:cluster-admins"}}})
	s.seed()

	cfg, err := LoadKubeconfig(c.Path(bootstrap.AdminKubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(t.Context(), cfg, Options{Scope: ScopeAll, Timeout: 20 * time.Second})
	out, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("report:\n%s", out)
	if rep.Verdict != Failed || rep.Server != c.URL {
		t.Errorf("verdict %s, server %s; want failed, %s", rep.Verdict, rep.Server, c.URL)
	}
	want := map[string]struct {
		status   Status
		problems []string // "object: reason" substrings, in order
	}{
		"dns":     {Skip, nil},
		"metrics": {Skip, nil},
		"storage": {Fail, []string{
			"Deployment local-path-storage/local-path-provisioner: 0/1 available; no ReplicaSet and no pods (is kube-controller-manager running?)",
			"PersistentVolumeClaim ecommerce/data: Pending: waiting for first consumer (no pod uses it)",
			"PersistentVolumeClaim ecommerce/uploads: Pending: ProvisioningFailed: failed to provision volume: mkdir /var/lib/ecom-agent-volumes/pvc-1: permission denied",
		}},
		"workloads": {Fail, []string{
			"Deployment ecommerce/backend: 0/2 available; no ReplicaSet and no pods",
			"Deployment local-path-storage/local-path-provisioner: 0/1 available",
			`StatefulSet ecommerce/postgresql: 0/1 ready; pod postgresql-0: container postgresql: ImagePullBackOff: Back-off pulling image "postgres:15.8"`,
		}},
		"services": {Fail, []string{"Service ecommerce/backend-service: no ready endpoints: no pod matches its selector app=backend"}},
		"hpa":      {Fail, []string{"HorizontalPodAutoscaler ecommerce/backend: no status yet"}},
		"backend":  {Fail, []string{"Service ecommerce/backend-service: no ready endpoints"}},
		"frontend": {Fail, []string{"Service ecommerce/frontend-service: does not exist"}},
		"postgresql": {Fail, []string{
			`StatefulSet ecommerce/postgresql: 0/1 ready; pod postgresql-0: container postgresql: ImagePullBackOff`,
		}},
		"prometheus": {Fail, []string{"Service ecommerce/prometheus-service: does not exist"}},
		"grafana":    {Skip, nil},
	}
	if len(rep.Checks) != len(want) {
		t.Errorf("%d checks, want %d", len(rep.Checks), len(want))
	}
	for _, r := range rep.Checks {
		w, ok := want[r.Name]
		if !ok {
			t.Errorf("unexpected check %s", r.Name)
			continue
		}
		if r.Status != w.status {
			t.Errorf("%s: %s (%s), want %s", r.Name, r.Status, r.Reason, w.status)
		}
		if len(r.Problems) != len(w.problems) {
			t.Errorf("%s: problems %v, want %d", r.Name, r.Problems, len(w.problems))
			continue
		}
		for i, p := range r.Problems {
			if !strings.Contains(p.String(), w.problems[i]) {
				t.Errorf("%s problem %d:\n got %q\nwant %q", r.Name, i, p, w.problems[i])
			}
		}
	}
	if r := rep.Checks[2]; r.Name != "metrics" || r.Reason != "not seeded: no Deployment kube-system/metrics-server" {
		t.Errorf("metrics: %+v", r)
	}
	if r := rep.Checks[4]; !strings.HasPrefix(r.Reason, "1 of 2 without a ready endpoint") {
		t.Errorf("services: %q; the Service with a ready endpoint counts as fine", r.Reason)
	}

	only := Run(t.Context(), cfg, Options{Scope: ScopeAddOns, Timeout: 20 * time.Second})
	if len(only.Checks) != 3 || only.Checks[0].Name != "dns" || only.Verdict != Failed {
		t.Errorf("scope addons: %s, %+v", only.Verdict, only.Checks)
	}

	nobody := Run(t.Context(), c.RestConfigFor(t, "nobody"), Options{Timeout: 10 * time.Second})
	if nobody.Verdict != Unreachable || !strings.Contains(nobody.Error, "may not read the cluster") || len(nobody.Checks) != 0 {
		t.Errorf("a user without rights: %s %q", nobody.Verdict, nobody.Error)
	}

	// Reads only: the audit log holds every request but events'.
	data, err := os.ReadFile(c.Path(bootstrap.AuditLogFile))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 4<<20)
	reads := 0
	for sc.Scan() {
		var ev struct {
			Verb       string `json:"verb"`
			UserAgent  string `json:"userAgent"`
			RequestURI string `json:"requestURI"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || !strings.HasPrefix(ev.UserAgent, "ecom-agent-verify/") {
			continue
		}
		if ev.Verb != "get" && ev.Verb != "list" {
			t.Errorf("verify did %s %s", ev.Verb, ev.RequestURI)
		}
		reads++
	}
	if reads < 20 {
		t.Errorf("the audit log holds %d of verify's requests, want at least 20", reads)
	}
}

// seeder writes the objects the test verifies.
type seeder struct {
	t  *testing.T
	cs kubernetes.Interface
}

var resourceGi = resource.MustParse("1Gi")

func (s seeder) meta(ns, name string, labels map[string]string) metav1.ObjectMeta {
	l := map[string]string{seed.ManagedByLabel: seed.ManagedByValue}
	for k, v := range labels {
		l[k] = v
	}
	return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l}
}

func (s seeder) create(obj any) {
	s.t.Helper()
	ctx, cs, opts := s.t.Context(), s.cs, metav1.CreateOptions{}
	var err error
	switch o := obj.(type) {
	case *rbacv1.ClusterRoleBinding:
		_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, opts)
	case *corev1.Namespace:
		_, err = cs.CoreV1().Namespaces().Create(ctx, o, opts)
	case *corev1.ServiceAccount:
		_, err = cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, opts)
	case *corev1.Service:
		_, err = cs.CoreV1().Services(o.Namespace).Create(ctx, o, opts)
	case *corev1.PersistentVolumeClaim:
		_, err = cs.CoreV1().PersistentVolumeClaims(o.Namespace).Create(ctx, o, opts)
	case *corev1.Event:
		_, err = cs.CoreV1().Events(o.Namespace).Create(ctx, o, opts)
	case *corev1.Pod:
		var p *corev1.Pod
		if p, err = cs.CoreV1().Pods(o.Namespace).Create(ctx, o, opts); err == nil {
			p.Status = o.Status
			_, err = cs.CoreV1().Pods(o.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		}
	case *appsv1.Deployment:
		_, err = cs.AppsV1().Deployments(o.Namespace).Create(ctx, o, opts)
	case *appsv1.StatefulSet:
		_, err = cs.AppsV1().StatefulSets(o.Namespace).Create(ctx, o, opts)
	case *autoscalingv2.HorizontalPodAutoscaler:
		_, err = cs.AutoscalingV2().HorizontalPodAutoscalers(o.Namespace).Create(ctx, o, opts)
	case *storagev1.StorageClass:
		_, err = cs.StorageV1().StorageClasses().Create(ctx, o, opts)
	case *discoveryv1.EndpointSlice:
		_, err = cs.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, opts)
	default:
		s.t.Fatalf("seeder: %T", obj)
	}
	if err != nil {
		s.t.Fatalf("create %T: %v", obj, err)
	}
}

func podTemplate(labels map[string]string, container, image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: container, Image: image}}}}
}

// seed writes a platform that does not work: a Deployment without pods,
// a StatefulSet whose pod cannot pull its image, a Service without
// endpoints, an HPA never evaluated, a provisioner that is not available,
// two Pending claims (one with a ProvisioningFailed event).
func (s seeder) seed() {
	const ns = "ecommerce"
	s.create(&corev1.Namespace{ObjectMeta: s.meta("", ns, nil)})
	s.create(&corev1.Namespace{ObjectMeta: s.meta("", storageNamespace, nil)})
	s.create(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}})
	backend := map[string]string{"app": "backend"}
	s.create(&appsv1.Deployment{ObjectMeta: s.meta(ns, "backend", backend), Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2),
		Selector: &metav1.LabelSelector{MatchLabels: backend}, Template: podTemplate(backend, "backend", "ecom/backend:1.4.0")}})
	provisioner := map[string]string{"app": "local-path-provisioner"}
	s.create(&appsv1.Deployment{ObjectMeta: s.meta(storageNamespace, storageDeployment, provisioner), Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: provisioner}, Template: podTemplate(provisioner, "provisioner", "local-path:v0.0.30")}})
	pg := map[string]string{"app": "postgresql"}
	s.create(&appsv1.StatefulSet{ObjectMeta: s.meta(ns, postgresSet, pg), Spec: appsv1.StatefulSetSpec{ServiceName: "postgresql-headless",
		Selector: &metav1.LabelSelector{MatchLabels: pg}, Template: podTemplate(pg, postgresContainer, "postgres:15.8")}})
	s.create(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "postgresql-0", Labels: pg},
		Spec: corev1.PodSpec{NodeName: "cp-1", AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: postgresContainer, Image: "postgres:15.8"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending,
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionFalse}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: postgresContainer, Image: "postgres:15.8", State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "postgres:15.8"`}}}}},
	})
	port := []corev1.ServicePort{{Name: httpPortName, Port: 8000}}
	s.create(&corev1.Service{ObjectMeta: s.meta(ns, backendService, backend), Spec: corev1.ServiceSpec{Selector: backend, Ports: port}})
	s.create(&corev1.Service{ObjectMeta: s.meta(ns, "redis-service", nil), Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "redis"}, Ports: port}})
	s.create(&discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "redis-service-1", Labels: map[string]string{discoveryv1.LabelServiceName: "redis-service"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.9"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	})
	s.create(&autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: s.meta(ns, "backend", nil), Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "backend"},
		MinReplicas:    ptr.To[int32](2), MaxReplicas: 5}})
	s.create(&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-path", Annotations: map[string]string{annDefaultClass: "true"}},
		Provisioner: "rancher.io/local-path", VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)})
	for _, name := range []string{"data", "uploads"} {
		s.create(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resourceGi}}}})
	}
	now := metav1.Now()
	s.create(&corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "uploads.1"},
		InvolvedObject: corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: "uploads"},
		Type:           corev1.EventTypeWarning, Reason: "ProvisioningFailed", FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Message: "failed to provision volume: mkdir /var/lib/ecom-agent-volumes/pvc-1: permission denied",
		Source:  corev1.EventSource{Component: "rancher.io/local-path"}})
}
