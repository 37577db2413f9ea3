package seed

import (
	"context"
	"fmt"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// prune deletes the objects of prev's inventory that left the set, when the
// live object carries our label and annotation, and records the new
// inventory in rep. Namespaces and CRDs are never pruned. When the set has
// problems nothing is pruned: an object of a file that did not parse has
// not left the set.
func (a *applier) prune(ctx context.Context, rep *Report, set *Set, prev *Report) error {
	var prevInv []Ref
	if prev != nil {
		prevInv = prev.Inventory
	}
	inSet := map[string]bool{}
	inSetAnyNS := map[string]bool{} // objects whose namespace is not known (kind not mapped)
	var inv []Ref
	for _, o := range rep.Objects {
		gk := schema.FromAPIVersionAndKind(o.APIVersion, o.Kind).GroupKind()
		if o.Namespace == "" && (o.Result == Skipped || o.Result == Failed) {
			inSetAnyNS[setKey(gk, "", o.Name)] = true
		}
		inSet[setKey(gk, o.Namespace, o.Name)] = true
		inv = append(inv, Ref{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, File: o.File})
	}
	for _, r := range prevInv {
		gk := schema.FromAPIVersionAndKind(r.APIVersion, r.Kind).GroupKind()
		if inSet[setKey(gk, r.Namespace, r.Name)] || inSetAnyNS[setKey(gk, "", r.Name)] {
			continue
		}
		if len(set.Problems) > 0 {
			a.log.Info("not pruning while the manifests have problems", "object", r.String())
			inv = append(inv, r)
			continue
		}
		res := Object{File: r.File, APIVersion: r.APIVersion, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
		keep, err := a.pruneOne(ctx, r, gk, &res)
		if err != nil {
			return err
		}
		if keep {
			inv = append(inv, r)
		}
		if res.Result != "" {
			rep.Objects = append(rep.Objects, res)
		}
	}
	sort.SliceStable(inv, func(i, j int) bool {
		if inv[i].Kind != inv[j].Kind {
			return inv[i].Kind < inv[j].Kind
		}
		if inv[i].Namespace != inv[j].Namespace {
			return inv[i].Namespace < inv[j].Namespace
		}
		return inv[i].Name < inv[j].Name
	})
	rep.Inventory = inv
	return nil
}

// pruneOne prunes one object that left the set. It reports whether the
// object stays in the inventory (to try again), and sets res.Result when
// there is something to report.
func (a *applier) pruneOne(ctx context.Context, r Ref, gk schema.GroupKind, res *Object) (keep bool, err error) {
	if gk.Group == "" && gk.Kind == "Namespace" || isCRD(gk) {
		res.Result, res.Reason = Skipped, notPrunedReason
		a.log.Info("object left the set, not pruned", "object", r.String(), "reason", notPrunedReason)
		return false, nil
	}
	fail := func(why string) (bool, error) {
		if err := ctx.Err(); err != nil {
			return true, err
		}
		res.Result, res.Reason = Failed, "prune: "+why
		a.log.Warn("prune failed", "object", r.String(), "reason", why)
		return true, nil
	}
	gv, _ := schema.ParseGroupVersion(r.APIVersion)
	mapping, err := a.mapper.RESTMapping(gk, gv.Version)
	if meta.IsNoMatchError(err) {
		a.log.Info("object left the set and its kind is no longer served", "object", r.String())
		return false, nil
	}
	if err != nil {
		return fail("discovery: " + err.Error())
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(mapping.Resource).Namespace(namespaceOrDefault(r.Namespace))
	}
	live, err := ri.Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		a.log.Info("object left the set and is already gone", "object", r.String())
		return false, nil
	}
	if err != nil {
		return fail("get: " + reason(err))
	}
	if live.GetLabels()[ManagedByLabel] != ManagedByValue || live.GetAnnotations()[ManifestAnnotation] == "" {
		res.Result = Skipped
		res.Reason = fmt.Sprintf("not pruned: the live object does not carry both the label %s=%s and the annotation %s", ManagedByLabel, ManagedByValue, ManifestAnnotation)
		a.log.Info("object left the set, not pruned", "object", r.String(), "reason", res.Reason)
		return false, nil
	}
	if err := a.write(ctx); err != nil {
		return true, err
	}
	uid := live.GetUID()
	policy := metav1.DeletePropagationBackground
	err = ri.Delete(ctx, r.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy})
	if err != nil && !apierrors.IsNotFound(err) {
		return fail(reason(err))
	}
	res.Result = Pruned
	a.log.Info("object pruned", "object", r.String())
	return false, nil
}
