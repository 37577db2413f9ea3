package seed

import (
	"context"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
)

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
