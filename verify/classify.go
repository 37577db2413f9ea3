package verify

// The verdicts on objects, as pure functions: what the API server
// returned goes in, "" (fine) or the reason for a person comes out.

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	storagev1 "k8s.io/api/storage/v1"
)

// join joins the non-empty parts with ": ".
func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = oneLine(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ": ")
}

func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// deploymentState returns whether d has every replica updated, ready and
// available, and its count ("0/5 available").
func deploymentState(d *appsv1.Deployment) (bool, string) {
	want, s := replicas(d.Spec.Replicas), d.Status
	state := fmt.Sprintf("%d/%d available", s.AvailableReplicas, want)
	if s.ReadyReplicas != s.AvailableReplicas {
		state += fmt.Sprintf(", %d ready", s.ReadyReplicas)
	}
	if s.UpdatedReplicas < want && s.UpdatedReplicas != s.AvailableReplicas {
		state += fmt.Sprintf(", %d/%d updated", s.UpdatedReplicas, want) // a rollout under way or stuck
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
			state += "; " + join(string(c.Reason), c.Message)
		}
	}
	return s.AvailableReplicas >= want && s.ReadyReplicas >= want && s.UpdatedReplicas >= want, state
}

// statefulSetState returns whether every replica of s is ready and updated.
func statefulSetState(s *appsv1.StatefulSet) (bool, string) {
	want, st := replicas(s.Spec.Replicas), s.Status
	state := fmt.Sprintf("%d/%d ready", st.ReadyReplicas, want)
	if st.UpdatedReplicas < want && st.UpdatedReplicas != st.ReadyReplicas {
		state += fmt.Sprintf(", %d/%d updated", st.UpdatedReplicas, want)
	}
	return st.ReadyReplicas >= want && st.UpdatedReplicas >= want, state
}

// daemonSetState returns whether a DaemonSet's pod is ready on every node
// that should run one.
func daemonSetState(d *appsv1.DaemonSet) (bool, string) {
	s := d.Status
	return s.NumberReady >= s.DesiredNumberScheduled, fmt.Sprintf("%d/%d ready", s.NumberReady, s.DesiredNumberScheduled)
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// podProblem returns why pod p is not Ready, "" when it is: the first
// container's waiting reason and message (ErrImagePull, ImagePullBackOff,
// CrashLoopBackOff, CreateContainerConfigError), an init container that
// did not finish, or why the scheduler keeps it Pending.
func podProblem(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "terminating"
	}
	switch p.Status.Phase {
	case corev1.PodFailed:
		return join("Failed", p.Status.Reason, p.Status.Message)
	case corev1.PodSucceeded:
		return "Succeeded: its containers exited"
	}
	if c := podCondition(p, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse {
		return join("Pending", c.Reason, c.Message)
	}
	if p.Spec.NodeName == "" {
		return "Pending: not scheduled yet"
	}
	sidecar := map[string]bool{}
	for _, c := range p.Spec.InitContainers {
		sidecar[c.Name] = c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
	}
	for _, cs := range p.Status.InitContainerStatuses {
		st, what := cs.State, "init container "+cs.Name
		switch {
		case st.Waiting != nil && st.Waiting.Reason != "PodInitializing":
			return what + ": " + waiting(cs)
		case st.Terminated != nil && st.Terminated.ExitCode != 0:
			return what + ": " + terminated(st.Terminated)
		case st.Running != nil && !sidecar[cs.Name]:
			return what + " still running"
		}
	}
	if c := podCondition(p, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue {
		return ""
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch st, what := cs.State, "container "+cs.Name; {
		case st.Waiting != nil:
			return what + ": " + waiting(cs)
		case st.Terminated != nil:
			return what + ": " + terminated(st.Terminated)
		case !cs.Ready:
			return what + " running but not Ready (its readiness probe fails)"
		}
	}
	if c := podCondition(p, corev1.PodReady); c != nil {
		return join("not Ready", c.Reason, c.Message)
	}
	return join(string(p.Status.Phase), p.Status.Reason, p.Status.Message)
}

// waiting says why a container waits, with its last exit when it crashed.
func waiting(cs corev1.ContainerStatus) string {
	s := join(cs.State.Waiting.Reason, cs.State.Waiting.Message)
	if t := cs.LastTerminationState.Terminated; t != nil {
		s += fmt.Sprintf(" (last %s, %d restarts)", terminated(t), cs.RestartCount)
	}
	return s
}

func terminated(t *corev1.ContainerStateTerminated) string {
	s := fmt.Sprintf("exited %d", t.ExitCode)
	if t.Reason != "" {
		s += " " + t.Reason
	}
	if t.Message != "" {
		s += ": " + oneLine(t.Message)
	}
	return s
}

// firstPodProblem returns the first pod (by name) that is not Ready, and
// why; terminating pods come last.
func firstPodProblem(pods []corev1.Pod) (name, problem string) {
	sorted := slices.Clone(pods)
	sort.SliceStable(sorted, func(i, j int) bool {
		ti, tj := sorted[i].DeletionTimestamp != nil, sorted[j].DeletionTimestamp != nil
		if ti != tj {
			return !ti
		}
		return sorted[i].Name < sorted[j].Name
	})
	for i := range sorted {
		if p := podProblem(&sorted[i]); p != "" {
			return sorted[i].Name, p
		}
	}
	return "", ""
}

// eventTime is when an event last happened, whichever API wrote it.
func eventTime(e *corev1.Event) time.Time {
	t := e.CreationTimestamp.Time
	for _, c := range []time.Time{e.FirstTimestamp.Time, e.LastTimestamp.Time, e.EventTime.Time} {
		if c.After(t) {
			t = c
		}
	}
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime.Time
	}
	return t
}

// latestWarning returns the most recent Warning among events, or nil.
func latestWarning(events []corev1.Event) *corev1.Event {
	var last *corev1.Event
	for i := range events {
		e := &events[i]
		if e.Type == corev1.EventTypeWarning && (last == nil || eventTime(e).After(eventTime(last))) {
			last = e
		}
	}
	return last
}

// workloadProblem says why a workload in state is not available: its
// first failing pod, else the latest Warning event of what creates its
// pods (FailedCreate), else that it has no pods; noReplicaSet says that a
// Deployment has no ReplicaSet at all.
func workloadProblem(state string, pods []corev1.Pod, creatorEvents []corev1.Event, noReplicaSet bool) string {
	if name, p := firstPodProblem(pods); p != "" {
		return state + "; pod " + name + ": " + p
	}
	if w := latestWarning(creatorEvents); w != nil {
		return state + "; " + join(w.Reason, w.Message)
	}
	switch {
	case len(pods) > 0:
		return state
	case noReplicaSet:
		return state + "; no ReplicaSet and no pods (is kube-controller-manager running?)"
	}
	return state + "; no pods, and no event says why (is kube-controller-manager running?)"
}

// readyEndpoints counts the ready endpoints of a Service's slices (a
// missing ready condition means ready, as the API defines it).
func readyEndpoints(slices []discoveryv1.EndpointSlice) int {
	n := 0
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				n++
			}
		}
	}
	return n
}

// noEndpointsProblem says why a Service with a selector has no ready
// endpoint, from the pods its selector matches.
func noEndpointsProblem(selector string, pods []corev1.Pod) string {
	if len(pods) == 0 {
		return "no ready endpoints: no pod matches its selector " + selector
	}
	name, p := firstPodProblem(pods)
	if p == "" {
		return fmt.Sprintf("no ready endpoints, though %d pod(s) matching %s are Ready (EndpointSlices not updated: is kube-controller-manager running?)", len(pods), selector)
	}
	return fmt.Sprintf("no ready endpoints: %d pod(s) match, none Ready; pod %s: %s", len(pods), name, p)
}

// hpaProblem says why an HPA cannot scale: ScalingActive not True (its
// message), or no current metrics.
func hpaProblem(h *autoscalingv2.HorizontalPodAutoscaler) string {
	if len(h.Status.Conditions) == 0 {
		return "no status yet (kube-controller-manager has not evaluated it)"
	}
	for _, c := range h.Status.Conditions {
		if c.Type != autoscalingv2.ScalingActive {
			continue
		}
		if c.Status != corev1.ConditionTrue {
			return join("ScalingActive="+string(c.Status), c.Reason, c.Message)
		}
		if len(h.Status.CurrentMetrics) == 0 {
			return "ScalingActive but no current metrics"
		}
		return ""
	}
	return "no ScalingActive condition"
}

// annDefaultClass marks the default StorageClass.
const annDefaultClass = "storageclass.kubernetes.io/is-default-class"

// defaultClass returns the default StorageClass: the newest of those
// annotated as default, as the API server picks it.
func defaultClass(classes []storagev1.StorageClass) *storagev1.StorageClass {
	var def *storagev1.StorageClass
	for i := range classes {
		c := &classes[i]
		if c.Annotations[annDefaultClass] != "true" {
			continue
		}
		if def == nil || c.CreationTimestamp.After(def.CreationTimestamp.Time) {
			def = c
		}
	}
	return def
}

// claimFacts is what explains a claim's phase.
type claimFacts struct {
	claim *corev1.PersistentVolumeClaim
	// class is the claim's StorageClass, nil when it does not exist.
	class *storagev1.StorageClass
	// events are the claim's events.
	events []corev1.Event
	// users are the pods that mount the claim.
	users []corev1.Pod
}

// annSelectedNode is where the scheduler asks a WaitForFirstConsumer
// volume to be provisioned.
const annSelectedNode = "volume.kubernetes.io/selected-node"

// claimProblem says why a claim is not Bound, "" when it is.
func claimProblem(f claimFacts) string {
	c := f.claim
	switch c.Status.Phase {
	case corev1.ClaimBound:
		return ""
	case corev1.ClaimLost:
		return fmt.Sprintf("Lost: its volume %s is gone", c.Spec.VolumeName)
	}
	if w := latestWarning(f.events); w != nil {
		return join("Pending", w.Reason, w.Message)
	}
	if f.class == nil {
		if c.Spec.StorageClassName != nil && *c.Spec.StorageClassName != "" {
			return fmt.Sprintf("Pending: StorageClass %s does not exist", *c.Spec.StorageClassName)
		}
		return "Pending: it names no StorageClass and there is no default"
	}
	if node := c.Annotations[annSelectedNode]; node != "" {
		return fmt.Sprintf("Pending: provisioning on node %s by %s", node, f.class.Provisioner)
	}
	if f.class.VolumeBindingMode != nil && *f.class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
		if len(f.users) == 0 {
			return "Pending: waiting for first consumer (no pod uses it)"
		}
		if name, p := firstPodProblem(f.users); p != "" {
			return fmt.Sprintf("Pending: waiting for first consumer: pod %s: %s", name, p)
		}
		return "Pending: waiting for first consumer"
	}
	return "Pending: waiting for provisioner " + f.class.Provisioner
}

// claimUsers returns the pods that mount the claim named claim.
func claimUsers(pods []corev1.Pod, claim string) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim {
				out = append(out, p)
				break
			}
		}
	}
	return out
}
