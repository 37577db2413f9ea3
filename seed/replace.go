package seed

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// A workload's spec.selector is immutable: a manifest that changes it
// cannot be applied over the live object. The seeder then replaces the
// object, the way an operator does it by hand (`kubectl delete
// --cascade=orphan`, then apply), and only when nothing is lost:
//
//   - the new selector must select the live object's pod template labels,
//     so the new controller adopts what the old one left running (a
//     Deployment its ReplicaSets, a StatefulSet or DaemonSet its pods) and
//     rolls it to the new template under its own update strategy: the
//     pods keep serving until their replacements are up;
//   - the old object is deleted with propagation Orphan, on the condition
//     that its UID and resourceVersion are still those read (nothing
//     changed it meanwhile); its pods, ReplicaSets and a StatefulSet's
//     PersistentVolumeClaims stay (the garbage collector only removes
//     their owner references);
//   - a scale set by a HorizontalPodAutoscaler is carried over.
//
// Otherwise the object fails with the reason and stays as it is.

// replaceKinds are the kinds whose spec.selector is immutable and whose
// controller adopts orphans that its selector matches.
var replaceKinds = map[schema.GroupKind]bool{
	{Group: "apps", Kind: "Deployment"}:  true,
	{Group: "apps", Kind: "StatefulSet"}: true,
	{Group: "apps", Kind: "DaemonSet"}:   true,
}

// replaceTimeout bounds the wait for the old object to be gone: the
// garbage collector orphans its dependents first, usually within a second.
const replaceTimeout = 60 * time.Second

// replaceAttempts bounds the deletions tried while the object's controller
// keeps writing it between our read and our delete.
const replaceAttempts = 5

// selectorChanged reports whether obj, a manifest of a kind in
// replaceKinds, has another spec.selector than live.
func selectorChanged(gk schema.GroupKind, live, obj *unstructured.Unstructured) (bool, error) {
	if !replaceKinds[gk] {
		return false, nil
	}
	want, err := labelSelector(obj)
	if err != nil {
		return false, fmt.Errorf("the manifest's spec.selector: %w", err)
	}
	have, err := labelSelector(live)
	if err != nil {
		return false, fmt.Errorf("the live object's spec.selector: %w", err)
	}
	return !equality.Semantic.DeepEqual(want, have), nil
}

// labelSelector reads spec.selector.
func labelSelector(u *unstructured.Unstructured) (*metav1.LabelSelector, error) {
	m, ok, err := unstructured.NestedMap(u.Object, "spec", "selector")
	if err != nil || !ok {
		return nil, cmp.Or(err, errors.New("missing"))
	}
	var sel metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &sel); err != nil {
		return nil, err
	}
	// An empty list and no list are the same selector.
	if len(sel.MatchLabels) == 0 {
		sel.MatchLabels = nil
	}
	if len(sel.MatchExpressions) == 0 {
		sel.MatchExpressions = nil
	}
	return &sel, nil
}

// notAdoptable is why a replacement is refused; it names what to do.
type notAdoptable struct {
	selector string
	labels   labels.Set
}

func (e notAdoptable) Error() string {
	return fmt.Sprintf("spec.selector changed and the new selector %q does not select the running pods (labels %s): "+
		"replacing the object would leave them orphaned; keep a selector those labels match, or delete the object "+
		"with its pods by hand and let the next pass create it", e.selector, e.labels)
}

// replace deletes live, orphaning its dependents, once it has checked that
// obj's selector adopts them, and waits until live is gone. The caller
// then creates obj.
func (a *applier) replace(ctx context.Context, ri dynamic.ResourceInterface, live, obj *unstructured.Unstructured) error {
	want, err := labelSelector(obj)
	if err != nil {
		return fmt.Errorf("the manifest's spec.selector: %w", err)
	}
	sel, err := metav1.LabelSelectorAsSelector(want)
	if err != nil {
		return fmt.Errorf("the manifest's spec.selector: %w", err)
	}
	uid := live.GetUID()
	// A deletion a previous pass started is only waited for.
	for attempt := 1; live.GetDeletionTimestamp() == nil; attempt++ {
		running, _, _ := unstructured.NestedStringMap(live.Object, "spec", "template", "metadata", "labels")
		if sel.Empty() || !sel.Matches(labels.Set(running)) {
			return notAdoptable{selector: sel.String(), labels: labels.Set(running)}
		}
		if err := a.write(ctx); err != nil {
			return guardErr{err}
		}
		rv := live.GetResourceVersion()
		orphan := metav1.DeletePropagationOrphan
		err = ri.Delete(ctx, live.GetName(), metav1.DeleteOptions{
			Preconditions:     &metav1.Preconditions{UID: &uid, ResourceVersion: &rv},
			PropagationPolicy: &orphan,
		})
		if err == nil || apierrors.IsNotFound(err) {
			old := "?"
			if s, err := labelSelector(live); err == nil {
				old = metav1.FormatLabelSelector(s)
			}
			a.log.Info("object deleted to be replaced, its pods kept", "kind", live.GetKind(),
				"object", live.GetNamespace()+"/"+live.GetName(), "old selector", old, "new selector", sel.String())
			break
		}
		if !apierrors.IsConflict(err) || attempt == replaceAttempts {
			return fmt.Errorf("delete the old object (orphaning its pods): %s", reason(err))
		}
		// Its controller wrote it (its status, most often) since it was
		// read: read it again, and check again what the deletion keeps.
		cur, err := ri.Get(ctx, live.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err), err == nil && cur.GetUID() != uid:
			return nil
		case err != nil:
			return fmt.Errorf("read the old object again: %s", reason(err))
		}
		live = cur
	}
	deadline := time.Now().Add(replaceTimeout)
	for {
		cur, err := ri.Get(ctx, live.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err), err == nil && cur.GetUID() != uid:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case time.Now().After(deadline):
			why := "it still exists"
			if err != nil {
				why = reason(err)
			} else if cur.GetDeletionTimestamp() != nil {
				why = fmt.Sprintf("it is still being deleted, finalizers %v: the garbage collector (kube-controller-manager) orphans its dependents first; is it running?", cur.GetFinalizers())
			}
			return fmt.Errorf("old object not gone %s after its deletion: %s; the next pass creates it", replaceTimeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
