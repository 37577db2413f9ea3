package verify

// The platform's object checks: workloads, services, hpa.

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// nothingSeeded is the reason of a check that finds no seeded object.
const nothingSeeded = "nothing seeded: no %s labelled app.kubernetes.io/managed-by=ecom-agent"

// checkWorkloads: every seeded Deployment, StatefulSet and DaemonSet
// available; each one that is not is named with its first pod's reason.
func checkWorkloads(ctx context.Context, e *env) Result {
	total, probs, err := Workloads(ctx, e.cs)
	switch {
	case err != nil:
		return broken("read the workloads", err)
	case total == 0:
		return skip(fmt.Sprintf(nothingSeeded, "Deployment, StatefulSet or DaemonSet"))
	case len(probs) > 0:
		return fail(fmt.Sprintf("%d of %d not available", len(probs), total), probs...)
	}
	return pass(fmt.Sprintf("%d Deployment(s), StatefulSet(s) and DaemonSet(s) available", total))
}

// Workloads reads the seeded Deployments, StatefulSets and DaemonSets (all
// namespaces) and returns how many there are and, for each one that is not
// available, which and why: its first pod's reason (ErrImagePull,
// CrashLoopBackOff, Pending on an unbound claim...) or why it has no pods.
// It is what the workloads check reports, for callers that keep watching.
func Workloads(ctx context.Context, cs kubernetes.Interface) (total int, notAvailable []Problem, err error) {
	var all []workload
	deps, err := cs.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, managed)
	if err != nil {
		return 0, nil, fmt.Errorf("list Deployments: %w", err)
	}
	for i := range deps.Items {
		all = append(all, deploymentWorkload(&deps.Items[i]))
	}
	sets, err := cs.AppsV1().StatefulSets(metav1.NamespaceAll).List(ctx, managed)
	if err != nil {
		return 0, nil, fmt.Errorf("list StatefulSets: %w", err)
	}
	for i := range sets.Items {
		all = append(all, statefulSetWorkload(&sets.Items[i]))
	}
	dss, err := cs.AppsV1().DaemonSets(metav1.NamespaceAll).List(ctx, managed)
	if err != nil {
		return 0, nil, fmt.Errorf("list DaemonSets: %w", err)
	}
	for i := range dss.Items {
		all = append(all, daemonSetWorkload(&dss.Items[i]))
	}
	r := (&env{cs: cs}).reader()
	for _, w := range all {
		if !w.ok {
			notAvailable = append(notAvailable, r.diagnose(ctx, w))
		}
	}
	return len(all), notAvailable, nil
}

// checkServices: every seeded Service with a selector has a ready
// endpoint.
func checkServices(ctx context.Context, e *env) Result {
	svcs, err := e.cs.CoreV1().Services(metav1.NamespaceAll).List(ctx, managed)
	if err != nil {
		return broken("list Services", err)
	}
	r := e.reader()
	var probs []Problem
	n := 0
	for i := range svcs.Items {
		s := &svcs.Items[i]
		if len(s.Spec.Selector) == 0 || s.Spec.Type == corev1.ServiceTypeExternalName {
			continue // its endpoints are someone else's
		}
		n++
		ready, why, err := r.serviceProblem(ctx, s)
		if err != nil {
			why = oneLine(err.Error())
		}
		if ready == 0 {
			probs = append(probs, Problem{objectName("Service", s.Namespace, s.Name), why})
		}
	}
	if n == 0 {
		return skip(fmt.Sprintf(nothingSeeded, "Service with a selector"))
	}
	if len(probs) > 0 {
		return fail(fmt.Sprintf("%d of %d without a ready endpoint", len(probs), n), probs...)
	}
	return pass(fmt.Sprintf("%d Service(s) with ready endpoints", n))
}

// checkHPAs: every seeded HorizontalPodAutoscaler is ScalingActive with
// current metrics.
func checkHPAs(ctx context.Context, e *env) Result {
	hpas, err := e.cs.AutoscalingV2().HorizontalPodAutoscalers(metav1.NamespaceAll).List(ctx, managed)
	if err != nil {
		return broken("list HorizontalPodAutoscalers", err)
	}
	if len(hpas.Items) == 0 {
		return skip(fmt.Sprintf(nothingSeeded, "HorizontalPodAutoscaler"))
	}
	var probs []Problem
	for i := range hpas.Items {
		h := &hpas.Items[i]
		if p := hpaProblem(h); p != "" {
			probs = append(probs, Problem{objectName("HorizontalPodAutoscaler", h.Namespace, h.Name), p})
		}
	}
	if len(probs) > 0 {
		return fail(fmt.Sprintf("%d of %d cannot scale", len(probs), len(hpas.Items)), probs...)
	}
	return pass(fmt.Sprintf("%d HorizontalPodAutoscaler(s) ScalingActive with current metrics", len(hpas.Items)))
}
