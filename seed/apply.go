package seed

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// DefaultCRDTimeout bounds the wait for the set's CRDs to be Established.
const DefaultCRDTimeout = 60 * time.Second

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// Seeder is the identity recorded in the report.
	Seeder string
	// Log receives one line per object that changed or failed, and a
	// summary. Secret values are never logged. nil discards.
	Log *slog.Logger
	// CRDTimeout bounds the wait for CRDs to be Established (default
	// DefaultCRDTimeout).
	CRDTimeout time.Duration
	// Guard, when set, is called before every write; an error stops the
	// pass at once and Apply returns it. Run uses it to never write
	// without a valid lease.
	Guard func() error
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

type applier struct {
	dyn     dynamic.Interface
	disc    discovery.DiscoveryInterface
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	log     *slog.Logger
	guard   func() error
	targets map[string]bool
}

// errStopped wraps the error of a pass stopped by its context or guard.
type errStopped struct{ err error }

func (e errStopped) Error() string { return "seeding stopped: " + e.err.Error() }
func (e errStopped) Unwrap() error { return e.err }

// Apply applies set once with server-side apply, in dependency order, and
// prunes the objects of prev's inventory that left the set. It takes no
// lease and does not save the report (see Run and SaveReport). Objects that
// fail or whose kind is not served are recorded in the report and do not
// stop the others; Apply returns an error only when it cannot talk to the
// API server at all, or when ctx or the guard stops the pass (the report
// then holds what was done).
func Apply(ctx context.Context, cfg *rest.Config, set *Set, prev *Report, o ApplyOptions) (Report, error) {
	rep := Report{
		Seeder:   o.Seeder,
		Started:  time.Now().UTC().Truncate(time.Millisecond),
		Hash:     set.Hash,
		Counts:   map[string]int{},
		Files:    set.Files,
		Problems: set.Problems,
		Objects:  []Object{},
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.CRDTimeout <= 0 {
		o.CRDTimeout = DefaultCRDTimeout
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return rep, fmt.Errorf("discovery client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return rep, fmt.Errorf("dynamic client: %w", err)
	}
	a := &applier{
		dyn:     dyn,
		disc:    dc,
		mapper:  restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
		log:     log,
		guard:   o.Guard,
		targets: hpaTargets(set.Manifests),
	}

	stop := func(err error) (Report, error) {
		rep.Finished = time.Now().UTC().Truncate(time.Millisecond)
		rep.count()
		return rep, errStopped{err}
	}
	foundationDone := false
	var crds []int // indexes in rep.Objects of the CRDs applied
	for _, tier := range tiers(set.Manifests) {
		if !foundationDone && !isFoundation(tier[0].gvk().GroupKind()) {
			a.awaitCRDs(ctx, &rep, crds, o.CRDTimeout)
			a.mapper.Reset()
			foundationDone = true
		}
		objs, err := a.applyTier(ctx, tier)
		for _, obj := range objs {
			gk := schema.FromAPIVersionAndKind(obj.APIVersion, obj.Kind).GroupKind()
			if isCRD(gk) && obj.Result != Failed && obj.Result != Skipped {
				crds = append(crds, len(rep.Objects))
			}
			rep.Objects = append(rep.Objects, obj)
		}
		if err != nil {
			return stop(err)
		}
	}
	if !foundationDone {
		a.awaitCRDs(ctx, &rep, crds, o.CRDTimeout)
	}
	if err := ctx.Err(); err != nil {
		return stop(err)
	}
	if err := a.prune(ctx, &rep, set, prev); err != nil {
		return stop(err)
	}
	rep.Finished = time.Now().UTC().Truncate(time.Millisecond)
	rep.count()
	log.Info("seeding pass done", "hash", short(rep.Hash), "counts", fmt.Sprint(rep.Counts),
		"problems", len(rep.Problems), "took", rep.Finished.Sub(rep.Started).Round(time.Millisecond).String())
	return rep, nil
}

func (r *Report) count() {
	r.Counts = map[string]int{}
	for _, o := range r.Objects {
		r.Counts[o.Result]++
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// write runs the guard before a write.
func (a *applier) write(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if a.guard != nil {
		return a.guard()
	}
	return nil
}

// notServed is the reason of an object whose kind the API server does not
// serve.
func notServed(gvk schema.GroupVersionKind) string {
	gv := gvk.GroupVersion().String()
	return fmt.Sprintf("kind %s (%s) is not served: install its CRD", gvk.Kind, gv)
}

// reason is the server's message for a failed request.
func reason(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Message != "" {
		return st.Status().Message
	}
	return err.Error()
}

// tierWorkers is how many objects of one tier are applied at once. Objects
// of a tier do not depend on each other, and one at a time a pass is a
// chain of round trips (a read, a dry run, a write) while the API server
// and etcd wait; client-go's rate limit (QPS 50, burst 100) still bounds
// the whole.
const tierWorkers = 8

// applyTier applies the manifests of one tier, tierWorkers at a time, and
// returns their results in the tier's order. When the pass is stopped
// (ctx or the guard), it returns the results of the objects that were
// done, in the tier's order, and the first error.
func (a *applier) applyTier(ctx context.Context, tier []Manifest) ([]Object, error) {
	objs := make([]Object, len(tier))
	errs := make([]error, len(tier))
	var g errgroup.Group
	g.SetLimit(tierWorkers)
	for i, m := range tier {
		g.Go(func() error {
			objs[i], errs[i] = a.applyOne(ctx, m)
			return nil
		})
	}
	_ = g.Wait()
	var done []Object
	var first error
	for i, err := range errs {
		if err != nil {
			first = cmp.Or(first, err)
			continue
		}
		done = append(done, objs[i])
	}
	return done, first
}

// applyOne applies one manifest. The error is only for a stopped pass; an
// object the server rejects is a failed Object.
func (a *applier) applyOne(ctx context.Context, m Manifest) (Object, error) {
	gvk := m.gvk()
	res := Object{File: m.File, Line: m.Line, APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind,
		Namespace: m.Object.GetNamespace(), Name: m.Object.GetName()}
	fail := func(why string) (Object, error) {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.Result, res.Reason = Failed, why
		a.log.Warn("object failed", "object", res.String(), "file", m.File, "line", m.Line, "reason", why)
		return res, nil
	}
	mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		if meta.IsNoMatchError(err) {
			res.Result, res.Reason = Skipped, notServed(gvk)
			a.log.Info("object skipped", "object", res.String(), "reason", res.Reason)
			return res, nil
		}
		return fail("discovery: " + err.Error())
	}
	obj := m.Object.DeepCopy()
	ns := obj.GetNamespace()
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ns = namespaceOrDefault(ns)
	} else {
		ns = ""
	}
	obj.SetNamespace(ns)
	res.Namespace = ns
	for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "selfLink"} {
		unstructured.RemoveNestedField(obj.Object, "metadata", f)
	}
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[ManagedByLabel] = ManagedByValue
	obj.SetLabels(labels)
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[ManifestAnnotation] = m.File
	obj.SetAnnotations(ann)

	var ri dynamic.ResourceInterface = a.dyn.Resource(mapping.Resource)
	if ns != "" {
		ri = a.dyn.Resource(mapping.Resource).Namespace(ns)
	}
	live, err := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		live = nil
	case err != nil:
		return fail("get: " + reason(err))
	}

	if gvk.Group == "" && gvk.Kind == "Secret" {
		generated, err := prepareSecret(obj, live)
		if err != nil {
			return fail(err.Error())
		}
		if len(generated) > 0 {
			a.log.Info("generated secret values", "object", res.String(), "keys", strings.Join(generated, ","))
		}
	}

	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	hpa := a.targets[setKey(gvk.GroupKind(), ns, obj.GetName())]
	var replicas any
	if hpa {
		replicas, _, _ = unstructured.NestedFieldNoCopy(obj.Object, "spec", "replicas")
	}
	replaced := false
	if live != nil {
		changed, err := selectorChanged(gvk.GroupKind(), live, obj)
		if err != nil {
			return fail(err.Error())
		}
		if changed {
			if err := a.replace(ctx, ri, live, obj); err != nil {
				if ctx.Err() != nil || isGuard(err) {
					return res, err
				}
				return fail(err.Error())
			}
			if cur, ok, _ := unstructured.NestedFieldCopy(live.Object, "spec", "replicas"); ok && hpa {
				replicas = cur // the HPA's scale, not the manifest's
				_ = unstructured.SetNestedField(obj.Object, cur, "spec", "replicas")
			}
			live, replaced = nil, true
		}
	}
	handedOver := false
	if hpa {
		if live != nil {
			// The HPA owns replicas now. If the seeder still owns
			// them (the HPA is new in the set), hand them over first,
			// or dropping the field would reset the replicas.
			if ownsField(live, FieldManager, "spec", "replicas") {
				if cur, ok, _ := unstructured.NestedFieldNoCopy(live.Object, "spec", "replicas"); ok {
					if err := a.handOver(ctx, ri, obj, cur); err != nil {
						if ctx.Err() != nil || isGuard(err) {
							return res, err
						}
						return fail("hand replicas over to the HPA: " + reason(err))
					}
					handedOver = true
				}
			}
			unstructured.RemoveNestedField(obj.Object, "spec", "replicas")
		}
	}

	if live != nil {
		// Ask for the result first: some objects (a PersistentVolumeClaim,
		// a spec with an empty list that storage drops) are written, with
		// a new resourceVersion, by every apply even when nothing changes.
		// When the result equals the live object there is nothing to
		// write.
		dry := opts
		dry.DryRun = []string{metav1.DryRunAll}
		would, err := ri.Apply(ctx, obj.GetName(), obj, dry)
		if err != nil {
			return fail(reason(err))
		}
		if sameObject(live, would) && !handedOver {
			res.Result = Unchanged
			return res, nil
		}
	}
	if err := a.write(ctx); err != nil {
		return res, guardErr{err}
	}
	out, err := ri.Apply(ctx, obj.GetName(), obj, opts)
	if err != nil {
		return fail(reason(err))
	}
	if hpa && live == nil && replicas != nil {
		// Created with the manifest's replicas: let a second manager
		// co-own them, then drop them from ours, so that the next pass
		// (which omits them) changes nothing.
		if err := a.handOver(ctx, ri, obj, replicas); err != nil {
			if ctx.Err() != nil || isGuard(err) {
				return res, err
			}
			return fail("hand replicas over to the HPA: " + reason(err))
		}
		unstructured.RemoveNestedField(obj.Object, "spec", "replicas")
		if err := a.write(ctx); err != nil {
			return res, guardErr{err}
		}
		if out, err = ri.Apply(ctx, obj.GetName(), obj, opts); err != nil {
			return fail(reason(err))
		}
	}
	switch {
	case replaced:
		res.Result = Replaced
	case live == nil:
		res.Result = Created
	case live.GetResourceVersion() == out.GetResourceVersion() && !handedOver:
		res.Result = Unchanged
	default:
		res.Result = Configured
	}
	if res.Result != Unchanged {
		a.log.Info("object "+res.Result, "object", res.String(), "file", m.File)
	}
	return res, nil
}

type guardErr struct{ err error }

func (g guardErr) Error() string { return g.err.Error() }
func (g guardErr) Unwrap() error { return g.err }

func isGuard(err error) bool {
	var g guardErr
	return errors.As(err, &g)
}

// handOver applies spec.replicas alone with ReplicasFieldManager.
func (a *applier) handOver(ctx context.Context, ri dynamic.ResourceInterface, obj *unstructured.Unstructured, replicas any) error {
	if err := a.write(ctx); err != nil {
		return guardErr{err}
	}
	partial := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": obj.GetAPIVersion(),
		"kind":       obj.GetKind(),
		"metadata":   map[string]any{"name": obj.GetName(), "namespace": obj.GetNamespace()},
		"spec":       map[string]any{"replicas": replicas},
	}}
	_, err := ri.Apply(ctx, obj.GetName(), partial, metav1.ApplyOptions{FieldManager: ReplicasFieldManager, Force: true})
	return err
}

// ownsField reports whether manager owns the field at path through an
// apply.
func ownsField(obj *unstructured.Unstructured, manager string, path ...string) bool {
	for _, mf := range obj.GetManagedFields() {
		if mf.Manager != manager || mf.Operation != metav1.ManagedFieldsOperationApply || mf.FieldsV1 == nil {
			continue
		}
		var fields map[string]any
		if json.Unmarshal(mf.FieldsV1.GetRawBytes(), &fields) != nil {
			continue
		}
		cur := fields
		found := true
		for _, p := range path {
			next, ok := cur["f:"+p].(map[string]any)
			if !ok {
				found = false
				break
			}
			cur = next
		}
		if found {
			return true
		}
	}
	return false
}

// String names an object in logs and messages.
func (o Object) String() string {
	return Ref{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}.String()
}

// sameObject reports whether an apply's result equals the live object but
// for its resourceVersion, generation and the times of its managed fields.
// The generation is left out because the server bumps it when a spec
// differs from the stored one only by an empty list that storage drops
// (a NetworkPolicy's "egress: []"): the stored spec would not change.
func sameObject(live, result *unstructured.Unstructured) bool {
	norm := func(u *unstructured.Unstructured) map[string]any {
		c := u.DeepCopy()
		unstructured.RemoveNestedField(c.Object, "metadata", "resourceVersion")
		unstructured.RemoveNestedField(c.Object, "metadata", "generation")
		if mfs, ok, _ := unstructured.NestedSlice(c.Object, "metadata", "managedFields"); ok {
			for _, mf := range mfs {
				if m, ok := mf.(map[string]any); ok {
					delete(m, "time")
				}
			}
			_ = unstructured.SetNestedSlice(c.Object, mfs, "metadata", "managedFields")
		}
		return c.Object
	}
	return equality.Semantic.DeepEqual(norm(live), norm(result))
}
