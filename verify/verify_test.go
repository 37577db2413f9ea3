package verify

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A check that outlives its timeout says so; one that panics fails alone.
func TestRunCheckBoundsAndContains(t *testing.T) {
	e := &env{}
	slow := check{"slow", ScopeAddOns, func(ctx context.Context, _ *env) Result {
		<-ctx.Done()
		return broken("list pods", ctx.Err())
	}}
	start := time.Now()
	r := e.runCheck(t.Context(), slow, 50*time.Millisecond)
	if time.Since(start) > 5*time.Second || r.Status != Fail || r.Name != "slow" || r.Scope != ScopeAddOns ||
		r.Reason != "timed out after 50ms: list pods: context deadline exceeded" {
		t.Errorf("slow check: %+v", r)
	}
	boom := check{"boom", ScopePlatform, func(context.Context, *env) Result {
		var m map[string]*Result
		return *m["x"]
	}}
	r = e.runCheck(t.Context(), boom, time.Second)
	if r.Status != Fail || r.Name != "boom" || !strings.HasPrefix(r.Reason, "internal error: ") {
		t.Errorf("panicking check: %+v", r)
	}
}
