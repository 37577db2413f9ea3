package verify

// Reading the cluster for the checks: the objects behind a verdict.

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ecom-platform/ecom-agent/seed"
)

// managed selects the objects the agent seeded.
var managed = metav1.ListOptions{LabelSelector: seed.ManagedByLabel + "=" + seed.ManagedByValue}

// objectName is "Kind namespace/name".
func objectName(kind, namespace, name string) string {
	if namespace == "" {
		return kind + " " + name
	}
	return kind + " " + namespace + "/" + name
}

// reader reads for one check, keeping each namespace's pods and
// EndpointSlices for the other objects of the check. It is not shared
// between checks.
type reader struct {
	cs     kubernetes.Interface
	pods   map[string][]corev1.Pod
	slices map[string][]discoveryv1.EndpointSlice
}

func (e *env) reader() *reader {
	return &reader{cs: e.cs, pods: map[string][]corev1.Pod{}, slices: map[string][]discoveryv1.EndpointSlice{}}
}

func (r *reader) podsIn(ctx context.Context, ns string) ([]corev1.Pod, error) {
	if pods, ok := r.pods[ns]; ok {
		return pods, nil
	}
	list, err := r.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %w", ns, err)
	}
	r.pods[ns] = list.Items
	return list.Items, nil
}

// podsMatching returns the pods of namespace ns that sel selects.
func (r *reader) podsMatching(ctx context.Context, ns string, sel labels.Selector) ([]corev1.Pod, error) {
	all, err := r.podsIn(ctx, ns)
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range all {
		if sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out, nil
}

// eventsOf returns the events about one object.
func (r *reader) eventsOf(ctx context.Context, ns, kind, name string) ([]corev1.Event, error) {
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name}.String()
	list, err := r.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list events of %s: %w", objectName(kind, ns, name), err)
	}
	return list.Items, nil
}

// endpointSlices returns the EndpointSlices of Service ns/name.
func (r *reader) endpointSlices(ctx context.Context, ns, name string) ([]discoveryv1.EndpointSlice, error) {
	all, ok := r.slices[ns]
	if !ok {
		list, err := r.cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list EndpointSlices in %s: %w", ns, err)
		}
		all = list.Items
		r.slices[ns] = all
	}
	var out []discoveryv1.EndpointSlice
	for _, s := range all {
		if s.Labels[discoveryv1.LabelServiceName] == name {
			out = append(out, s)
		}
	}
	return out, nil
}

// serviceProblem returns how many ready endpoints Service svc has and,
// when it has none, why (from the pods its selector matches).
func (r *reader) serviceProblem(ctx context.Context, svc *corev1.Service) (int, string, error) {
	slices, err := r.endpointSlices(ctx, svc.Namespace, svc.Name)
	if err != nil {
		return 0, "", err
	}
	if n := readyEndpoints(slices); n > 0 {
		return n, "", nil
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	pods, err := r.podsMatching(ctx, svc.Namespace, sel)
	if err != nil {
		return 0, "", err
	}
	return 0, noEndpointsProblem(sel.String(), pods), nil
}

// workload is a Deployment, StatefulSet or DaemonSet and its state.
type workload struct {
	kind, namespace, name string
	uid                   types.UID
	selector              *metav1.LabelSelector
	ok                    bool
	state                 string
}

func (w workload) object() string { return objectName(w.kind, w.namespace, w.name) }

func deploymentWorkload(d *appsv1.Deployment) workload {
	ok, state := deploymentState(d)
	return workload{"Deployment", d.Namespace, d.Name, d.UID, d.Spec.Selector, ok, state}
}

func statefulSetWorkload(s *appsv1.StatefulSet) workload {
	ok, state := statefulSetState(s)
	return workload{"StatefulSet", s.Namespace, s.Name, s.UID, s.Spec.Selector, ok, state}
}

func daemonSetWorkload(d *appsv1.DaemonSet) workload {
	ok, state := daemonSetState(d)
	return workload{"DaemonSet", d.Namespace, d.Name, d.UID, d.Spec.Selector, ok, state}
}

// diagnose says why w is not available, from its pods and the events of
// what creates them (a Deployment's newest ReplicaSet, else w itself).
func (r *reader) diagnose(ctx context.Context, w workload) Problem {
	prob := Problem{Object: w.object()}
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil {
		prob.Reason = w.state + "; its selector: " + err.Error()
		return prob
	}
	pods, err := r.podsMatching(ctx, w.namespace, sel)
	if err != nil {
		prob.Reason = w.state + "; " + err.Error()
		return prob
	}
	creatorKind, creator, noRS := w.kind, w.name, false
	if w.kind == "Deployment" {
		rs, err := r.newestReplicaSet(ctx, w, sel)
		switch {
		case err != nil:
			prob.Reason = w.state + "; " + err.Error()
			return prob
		case rs == "":
			noRS = true
		default:
			creatorKind, creator = "ReplicaSet", rs
		}
	}
	var events []corev1.Event
	if !noRS {
		// Without its events the pods still tell why.
		events, _ = r.eventsOf(ctx, w.namespace, creatorKind, creator)
	}
	prob.Reason = workloadProblem(w.state, pods, events, noRS)
	return prob
}

// newestReplicaSet names Deployment w's newest ReplicaSet (the highest
// revision), "" when it has none.
func (r *reader) newestReplicaSet(ctx context.Context, w workload, sel labels.Selector) (string, error) {
	list, err := r.cs.AppsV1().ReplicaSets(w.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return "", fmt.Errorf("list ReplicaSets of %s: %w", w.object(), err)
	}
	var own []appsv1.ReplicaSet
	for _, rs := range list.Items {
		if c := metav1.GetControllerOf(&rs); c != nil && c.UID == w.uid {
			own = append(own, rs)
		}
	}
	if len(own) == 0 {
		return "", nil
	}
	rev := func(rs appsv1.ReplicaSet) int64 {
		n, _ := strconv.ParseInt(rs.Annotations["deployment.kubernetes.io/revision"], 10, 64)
		return n
	}
	sort.Slice(own, func(i, j int) bool {
		if ri, rj := rev(own[i]), rev(own[j]); ri != rj {
			return ri > rj
		}
		return own[i].CreationTimestamp.After(own[j].CreationTimestamp.Time)
	})
	return own[0].Name, nil
}
