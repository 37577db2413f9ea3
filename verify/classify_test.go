package verify

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestWorkloadStates(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ok     bool
		state  string
		verdit func() (bool, string)
	}{
		{"deployment available", true, "5/5 available", func() (bool, string) {
			return deploymentState(&appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](5)},
				Status: appsv1.DeploymentStatus{AvailableReplicas: 5, ReadyReplicas: 5, UpdatedReplicas: 5}})
		}},
		{"deployment without pods", false, "0/5 available", func() (bool, string) {
			return deploymentState(&appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](5)}})
		}},
		{"deployment ready, not yet available (minReadySeconds)", false, "2/3 available, 3 ready", func() (bool, string) {
			return deploymentState(&appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3)},
				Status: appsv1.DeploymentStatus{AvailableReplicas: 2, ReadyReplicas: 3, UpdatedReplicas: 3}})
		}},
		{"deployment with a replica failure", false, "0/1 available; FailedCreate: pods \"x\" is forbidden: exceeded quota", func() (bool, string) {
			return deploymentState(&appsv1.Deployment{Status: appsv1.DeploymentStatus{Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: `pods "x" is forbidden: exceeded quota`}}}})
		}},
		{"deployment scaled to zero", true, "0/0 available", func() (bool, string) {
			return deploymentState(&appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](0)}})
		}},
		{"deployment rollout stuck", false, "5/5 available, 2/5 updated", func() (bool, string) {
			return deploymentState(&appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](5)},
				Status: appsv1.DeploymentStatus{AvailableReplicas: 5, ReadyReplicas: 5, UpdatedReplicas: 2}})
		}},
		{"statefulset ready", true, "1/1 ready", func() (bool, string) {
			return statefulSetState(&appsv1.StatefulSet{Status: appsv1.StatefulSetStatus{ReadyReplicas: 1, UpdatedReplicas: 1}})
		}},
		{"statefulset not ready", false, "0/1 ready", func() (bool, string) {
			return statefulSetState(&appsv1.StatefulSet{Status: appsv1.StatefulSetStatus{UpdatedReplicas: 1}})
		}},
		{"statefulset without pods", false, "0/1 ready", func() (bool, string) {
			return statefulSetState(&appsv1.StatefulSet{})
		}},
		{"daemonset ready on every node", true, "3/3 ready", func() (bool, string) {
			return daemonSetState(&appsv1.DaemonSet{Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, NumberReady: 3}})
		}},
		{"daemonset missing one", false, "2/3 ready", func() (bool, string) {
			return daemonSetState(&appsv1.DaemonSet{Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, NumberReady: 2}})
		}},
	} {
		ok, state := tc.verdit()
		if ok != tc.ok || state != tc.state {
			t.Errorf("%s: (%v, %q), want (%v, %q)", tc.name, ok, state, tc.ok, tc.state)
		}
	}
}

// pod builds a scheduled pod whose Ready condition is ready.
func pod(name string, ready bool, mod func(*corev1.Pod)) corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ecommerce"},
		Spec:       corev1.PodSpec{NodeName: "cp-1", Containers: []corev1.Container{{Name: "backend"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: st}}},
	}
	if mod != nil {
		mod(&p)
	}
	return p
}

func waitingIn(reason, msg string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodPending
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "backend", State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}}
	}
}

func TestPodProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"ready", pod("p", true, nil), ""},
		{"image pull back-off", pod("p", false, waitingIn("ImagePullBackOff", `Back-off pulling image "ecom/backend:1.4.0"`)),
			`container backend: ImagePullBackOff: Back-off pulling image "ecom/backend:1.4.0"`},
		{"err image pull", pod("p", false, waitingIn("ErrImagePull", "failed to pull and unpack image\n  lookup registry-1.docker.io: no such host")),
			"container backend: ErrImagePull: failed to pull and unpack image lookup registry-1.docker.io: no such host"},
		{"config error", pod("p", false, waitingIn("CreateContainerConfigError", `secret "backend-secret" not found`)),
			`container backend: CreateContainerConfigError: secret "backend-secret" not found`},
		{"crash loop with its last exit", pod("p", false, func(p *corev1.Pod) {
			waitingIn("CrashLoopBackOff", "back-off 5m0s restarting failed container=backend")(p)
			p.Status.ContainerStatuses[0].RestartCount = 7
			p.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}
		}), "container backend: CrashLoopBackOff: back-off 5m0s restarting failed container=backend (last exited 1 Error, 7 restarts)"},
		{"unschedulable", pod("p", false, func(p *corev1.Pod) {
			p.Spec.NodeName, p.Status.Phase = "", corev1.PodPending
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
				Message: "0/3 nodes are available: 3 Insufficient cpu."}}
		}), "Pending: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."},
		{"unbound claim", pod("p", false, func(p *corev1.Pod) {
			p.Spec.NodeName, p.Status.Phase = "", corev1.PodPending
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
				Message: `0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.`}}
		}), "Pending: Unschedulable: 0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."},
		{"not scheduled, no condition yet", pod("p", false, func(p *corev1.Pod) {
			p.Spec.NodeName, p.Status = "", corev1.PodStatus{Phase: corev1.PodPending}
		}), "Pending: not scheduled yet"},
		{"init container still running", pod("p", false, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "wait-for-db"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "wait-for-db", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
			waitingIn("PodInitializing", "")(p)
		}), "init container wait-for-db still running"},
		{"a running sidecar is fine, the app is not ready", pod("p", false, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "log-shipper", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "log-shipper", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "backend", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		}), "container backend running but not Ready (its readiness probe fails)"},
		{"init container failed", pod("p", false, func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "migrate", State: corev1.ContainerState{
				Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}}}}
		}), "init container migrate: exited 2 Error"},
		{"failed pod", pod("p", false, func(p *corev1.Pod) {
			p.Status.Phase, p.Status.Reason, p.Status.Message = corev1.PodFailed, "Evicted", "The node was low on resource: memory."
		}), "Failed: Evicted: The node was low on resource: memory."},
		{"terminating", pod("p", true, func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: time.Now()} }), "terminating"},
	} {
		if got := podProblem(&tc.pod); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestWorkloadProblem(t *testing.T) {
	old := metav1.NewTime(time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC))
	recent := metav1.NewTime(old.Add(time.Minute))
	failedCreate := []corev1.Event{
		{Type: corev1.EventTypeWarning, Reason: "FailedCreate", Message: "old", LastTimestamp: old},
		{Type: corev1.EventTypeNormal, Reason: "SuccessfulCreate", Message: "normal", LastTimestamp: metav1.NewTime(recent.Add(time.Hour))},
		{Type: corev1.EventTypeWarning, Reason: "FailedCreate", Message: `pods "backend-x" is forbidden: error looking up service account ecommerce/backend`, EventTime: metav1.NewMicroTime(recent.Time)},
	}
	pulling := pod("backend-b", false, waitingIn("ImagePullBackOff", "Back-off pulling image"))
	for _, tc := range []struct {
		name   string
		pods   []corev1.Pod
		events []corev1.Event
		noRS   bool
		want   string
	}{
		{"the first failing pod by name", []corev1.Pod{pod("backend-c", true, nil), pulling, pod("backend-a", true, nil)}, failedCreate, false,
			"0/5 available; pod backend-b: container backend: ImagePullBackOff: Back-off pulling image"},
		{"no pods: the latest warning of the creator", nil, failedCreate, false,
			`0/5 available; FailedCreate: pods "backend-x" is forbidden: error looking up service account ecommerce/backend`},
		{"no ReplicaSet", nil, nil, true, "0/5 available; no ReplicaSet and no pods (is kube-controller-manager running?)"},
		{"no pods, no event", nil, nil, false, "0/5 available; no pods, and no event says why (is kube-controller-manager running?)"},
		{"pods ready, not yet available", []corev1.Pod{pod("backend-a", true, nil)}, nil, false, "0/5 available"},
	} {
		if got := workloadProblem("0/5 available", tc.pods, tc.events, tc.noRS); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestEndpoints(t *testing.T) {
	sl := []discoveryv1.EndpointSlice{
		{Endpoints: []discoveryv1.Endpoint{{Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}}, {}}},
		{Endpoints: []discoveryv1.Endpoint{{Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}},
	}
	if n := readyEndpoints(sl); n != 2 {
		t.Errorf("readyEndpoints = %d, want 2 (a missing condition means ready)", n)
	}
	for _, tc := range []struct {
		pods []corev1.Pod
		want string
	}{
		{nil, "no ready endpoints: no pod matches its selector app=backend"},
		{[]corev1.Pod{pod("backend-a", false, waitingIn("ErrImagePull", "no such host"))},
			"no ready endpoints: 1 pod(s) match, none Ready; pod backend-a: container backend: ErrImagePull: no such host"},
		{[]corev1.Pod{pod("backend-a", true, nil)}, "no ready endpoints, though 1 pod(s) matching app=backend are Ready (EndpointSlices not updated: is kube-controller-manager running?)"},
	} {
		if got := noEndpointsProblem("app=backend", tc.pods); got != tc.want {
			t.Errorf("got %q\nwant %q", got, tc.want)
		}
	}
}

func TestHPAProblem(t *testing.T) {
	hpa := func(st corev1.ConditionStatus, reason, msg string, metrics int) *autoscalingv2.HorizontalPodAutoscaler {
		h := &autoscalingv2.HorizontalPodAutoscaler{}
		if st != "" {
			h.Status.Conditions = []autoscalingv2.HorizontalPodAutoscalerCondition{
				{Type: autoscalingv2.AbleToScale, Status: corev1.ConditionTrue},
				{Type: autoscalingv2.ScalingActive, Status: st, Reason: reason, Message: msg}}
		}
		h.Status.CurrentMetrics = make([]autoscalingv2.MetricStatus, metrics)
		return h
	}
	for _, tc := range []struct {
		h    *autoscalingv2.HorizontalPodAutoscaler
		want string
	}{
		{hpa(corev1.ConditionTrue, "ValidMetricFound", "", 2), ""},
		{hpa(corev1.ConditionFalse, "FailedGetResourceMetric", "the HPA was unable to compute the replica count: unable to get metrics for resource cpu: no metrics returned from resource metrics API", 0),
			"ScalingActive=False: FailedGetResourceMetric: the HPA was unable to compute the replica count: unable to get metrics for resource cpu: no metrics returned from resource metrics API"},
		{hpa(corev1.ConditionTrue, "ValidMetricFound", "", 0), "ScalingActive but no current metrics"},
		{hpa("", "", "", 0), "no status yet (kube-controller-manager has not evaluated it)"},
	} {
		if got := hpaProblem(tc.h); got != tc.want {
			t.Errorf("got %q\nwant %q", got, tc.want)
		}
	}
}

func TestDefaultClass(t *testing.T) {
	class := func(name string, def bool, at int) storagev1.StorageClass {
		c := storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(int64(at), 0))}}
		if def {
			c.Annotations = map[string]string{annDefaultClass: "true"}
		}
		return c
	}
	if d := defaultClass([]storagev1.StorageClass{class("slow", false, 1)}); d != nil {
		t.Errorf("default %s without the annotation", d.Name)
	}
	if d := defaultClass([]storagev1.StorageClass{class("old", true, 1), class("new", true, 2), class("x", false, 3)}); d == nil || d.Name != "new" {
		t.Errorf("default %v, want the newest annotated (new)", d)
	}
}

func TestClaimProblem(t *testing.T) {
	wffc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}, Provisioner: "rancher.io/local-path",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)}
	immediate := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Provisioner: "example.com/fast"}
	claim := func(phase corev1.PersistentVolumeClaimPhase, class string, ann map[string]string) *corev1.PersistentVolumeClaim {
		c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data-postgresql-0", Annotations: ann}, Status: corev1.PersistentVolumeClaimStatus{Phase: phase}}
		if class != "" {
			c.Spec.StorageClassName = &class
		}
		return c
	}
	pending := claim(corev1.ClaimPending, "", nil)
	unscheduled := pod("postgresql-0", false, func(p *corev1.Pod) {
		p.Spec.NodeName = ""
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/3 nodes are available: 3 Insufficient memory."}}
	})
	for _, tc := range []struct {
		name string
		f    claimFacts
		want string
	}{
		{"bound", claimFacts{claim: claim(corev1.ClaimBound, "", nil)}, ""},
		{"lost", claimFacts{claim: func() *corev1.PersistentVolumeClaim {
			c := claim(corev1.ClaimLost, "", nil)
			c.Spec.VolumeName = "pvc-1"
			return c
		}()}, "Lost: its volume pvc-1 is gone"},
		{"provisioning failed", claimFacts{claim: pending, class: wffc, users: []corev1.Pod{unscheduled}, events: []corev1.Event{
			{Type: corev1.EventTypeNormal, Reason: "WaitForFirstConsumer", Message: "waiting for first consumer to be created before binding"},
			{Type: corev1.EventTypeWarning, Reason: "ProvisioningFailed", Message: "failed to provision volume with StorageClass \"local-path\": failed to create volume pvc-1: mkdir /var/lib/ecom-agent-volumes: read-only file system"},
		}}, `Pending: ProvisioningFailed: failed to provision volume with StorageClass "local-path": failed to create volume pvc-1: mkdir /var/lib/ecom-agent-volumes: read-only file system`},
		{"no consumer", claimFacts{claim: pending, class: wffc}, "Pending: waiting for first consumer (no pod uses it)"},
		{"its consumer not scheduled", claimFacts{claim: pending, class: wffc, users: []corev1.Pod{unscheduled}},
			"Pending: waiting for first consumer: pod postgresql-0: Pending: Unschedulable: 0/3 nodes are available: 3 Insufficient memory."},
		{"node selected", claimFacts{claim: claim(corev1.ClaimPending, "", map[string]string{annSelectedNode: "worker-1"}), class: wffc},
			"Pending: provisioning on node worker-1 by rancher.io/local-path"},
		{"immediate", claimFacts{claim: pending, class: immediate}, "Pending: waiting for provisioner example.com/fast"},
		{"missing class", claimFacts{claim: claim(corev1.ClaimPending, "gone", nil)}, "Pending: StorageClass gone does not exist"},
		{"no class, no default", claimFacts{claim: pending}, "Pending: it names no StorageClass and there is no default"},
	} {
		if got := claimProblem(tc.f); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
	users := claimUsers([]corev1.Pod{unscheduled, pod("other", true, func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-postgresql-0"}}}}
	})}, "data-postgresql-0")
	if len(users) != 1 || users[0].Name != "other" {
		t.Errorf("claimUsers = %v, want the pod that mounts it", users)
	}
}

func TestFailSummary(t *testing.T) {
	one := fail("", Problem{"Service ecommerce/backend-service", "does not exist"})
	if one.Status != Fail || one.Reason != "Service ecommerce/backend-service: does not exist" || len(one.Problems) != 1 {
		t.Errorf("one problem: %+v", one)
	}
	two := fail("", Problem{"a", "x"}, Problem{"b", "y"})
	if two.Reason != "2 problems" || len(two.Problems) != 2 {
		t.Errorf("two problems: %q", two.Reason)
	}
	if r := fail("3 of 9 not available", Problem{"a", "x"}); r.Reason != "3 of 9 not available" {
		t.Errorf("summary: %q", r.Reason)
	}
}
