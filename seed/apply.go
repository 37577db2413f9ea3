package seed

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
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
	handedOver := false
	if hpa {
		replicas, _, _ = unstructured.NestedFieldNoCopy(obj.Object, "spec", "replicas")
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

// awaitCRDs waits until the CRDs at the given indexes of rep.Objects are
// Established, at most timeout in all; one that is not is failed (and
// retried by the next pass).
func (a *applier) awaitCRDs(ctx context.Context, rep *Report, idx []int, timeout time.Duration) {
	if len(idx) == 0 {
		return
	}
	deadline := time.Now().Add(timeout)
	pending := append([]int(nil), idx...)
	last := map[int]string{}
	for len(pending) > 0 && ctx.Err() == nil {
		var still []int
		// Discovery is read at most once a round, for every CRD.
		var lists []*metav1.APIResourceList
		read := false
		discovered := func(crd *unstructured.Unstructured) bool {
			if !read {
				lists, read = a.discovery(), true
			}
			return listed(crd, lists)
		}
		for _, i := range pending {
			o := &rep.Objects[i]
			crd, err := a.dyn.Resource(crdGVR).Get(ctx, o.Name, metav1.GetOptions{})
			if err != nil {
				last[i] = reason(err)
				still = append(still, i)
				continue
			}
			established, rejected, msg := crdConditions(crd)
			switch {
			case established && !discovered(crd):
				// Established comes before the API server's
				// discovery lists the new kind; the mapper reads
				// discovery once after this wait, and a kind it
				// misses then is skipped as not served.
				last[i] = "Established, not in discovery yet"
				still = append(still, i)
			case established:
			case rejected:
				o.Result, o.Reason = Failed, "CRD names not accepted: "+msg
				a.log.Warn("object failed", "object", o.String(), "reason", o.Reason)
			default:
				last[i] = msg
				still = append(still, i)
			}
		}
		pending = still
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, i := range pending {
				o := &rep.Objects[i]
				o.Result = Failed
				o.Reason = fmt.Sprintf("CRD not Established after %s", timeout)
				if last[i] != "" {
					o.Reason += ": " + last[i]
				}
				a.log.Warn("object failed", "object", o.String(), "reason", o.Reason)
			}
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// discovery returns the API server's resource lists as the mapper reads
// them (the aggregated document); nil when it cannot be read.
func (a *applier) discovery() []*metav1.APIResourceList {
	_, lists, err := a.disc.ServerGroupsAndResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return nil
	}
	return lists
}

// listed reports whether lists hold the CRD's kind in every version it
// serves.
func listed(crd *unstructured.Unstructured, lists []*metav1.APIResourceList) bool {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	for _, v := range versions {
		vm, _ := v.(map[string]any)
		name, _ := vm["name"].(string)
		if served, _ := vm["served"].(bool); !served || name == "" {
			continue
		}
		found := slices.ContainsFunc(lists, func(l *metav1.APIResourceList) bool {
			return l.GroupVersion == group+"/"+name &&
				slices.ContainsFunc(l.APIResources, func(r metav1.APIResource) bool { return r.Name == plural })
		})
		if !found {
			return false
		}
	}
	return true
}

func crdConditions(crd *unstructured.Unstructured) (established, rejected bool, msg string) {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		cm, _ := c.(map[string]any)
		typ, _ := cm["type"].(string)
		status, _ := cm["status"].(string)
		message, _ := cm["message"].(string)
		switch {
		case typ == "Established" && status == "True":
			established = true
		case typ == "NamesAccepted" && status == "False":
			rejected, msg = true, message
		case typ == "Established" && message != "":
			msg = message
		}
	}
	return established, rejected, msg
}

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
