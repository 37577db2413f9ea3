package gossip

import (
	"fmt"
	"slices"
	"testing"
)

// partitioned shows how a quorum test injects a split view: it wraps a
// real view and hides members from it.
type partitioned struct {
	View
	hidden []string
}

func (p partitioned) Members() []Member {
	return slices.DeleteFunc(p.View.Members(), func(m Member) bool { return slices.Contains(p.hidden, m.Name) })
}

func TestViewCanBeWrapped(t *testing.T) {
	t.Parallel()
	a := mustStart(t, testConfig("a", 0))
	b := mustStart(t, testConfig("b", 0, a.Addr().String()))
	c := mustStart(t, testConfig("c", 0, a.Addr().String()))
	waitFor(t, "three nodes to join", func() error { return seesAlive(a, b, c) })

	var v View = partitioned{View: a, hidden: []string{"c"}}
	var names []string
	for _, m := range v.Members() {
		names = append(names, fmt.Sprintf("%s:%s", m.Name, m.State))
	}
	if want := []string{"a:alive", "b:alive"}; !slices.Equal(names, want) {
		t.Errorf("filtered view = %v, want %v", names, want)
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateAlive: "alive", StateSuspect: "suspect", StateDead: "dead", StateLeft: "left", 0: "unknown"} {
		if s.String() != want {
			t.Errorf("State(%d) = %q, want %q", s, s, want)
		}
	}
}
