package quorum

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDecidePromise(t *testing.T) {
	p := proposal(1, 1, 2, 3)
	now := t0.Add(10 * time.Second) // promises granted at t0 hold until t0+30s
	later := t0.Add(time.Minute)    // and have expired by then
	released := promised(proposal(1, 0, 2, 3))
	released.Promises[0].Released = true
	tests := []struct {
		name   string
		local  LocalState
		req    Proposal
		now    time.Time
		grant  bool
		reason string // a substring of the reason
	}{
		{"fresh node: grants", local(2), p, now, true, "granted"},
		{"etcd data: refuses", LocalState{Self: self(2), HasEtcdState: true}, p, now, false, "etcd data"},
		{"holds a commit: refuses", LocalState{Self: self(2), State: State{Commit: &Commit{Proposal: p, Token: testToken}}}, proposal(2, 1, 2, 3), now, false, "holds commit"},
		{"sees a cluster: refuses", LocalState{Self: self(2), SeenClusterID: 0xc1}, p, now, false, "sees etcd cluster c1"},
		{"sees a commit holder: refuses", LocalState{Self: self(2), SeenCommitID: testToken}, p, now, false, "holding commit"},
		{"bound to another seed: refuses", LocalState{Self: self(2), State: promised(proposal(1, 0, 2, 3))}, p, now, false, "promised to seed cp-0 attempt 1"},
		{"own round in progress counts: refuses", LocalState{Self: self(2), State: promised(proposal(1, 2, 3, 4))}, p, now, false, "promised to seed cp-2"},
		{"promise to another seed expired: grants", LocalState{Self: self(2), State: promised(proposal(1, 0, 2, 3))}, p, later, true, "granted"},
		{"promise to another seed released: grants", LocalState{Self: self(2), State: released}, p, now, true, "granted"},
		{"same request again: grants idempotently", LocalState{Self: self(2), State: promised(p)}, p, now, true, "granted again"},
		{"newer attempt of the same seed: replaces", LocalState{Self: self(2), State: promised(p)}, proposal(2, 1, 2, 4), now, true, "granted"},
		{"older attempt of the same seed: stale", LocalState{Self: self(2), State: promised(proposal(2, 1, 2, 3))}, p, later, false, "stale"},
		{"an earlier promise delayed in the network: stale", LocalState{Self: self(2), State: promised(p, proposal(1, 0, 2, 3))}, p, later, false, "stale"},
		{"expect differs: refuses", local(2), func() Proposal { q := proposal(1, 1, 2, 3, 4, 5); return q }(), now, false, "expect 5 != 3"},
		{"not a member: refuses", local(4), p, now, false, "not a member"},
		{"lists this node at another address: refuses", local(2), func() Proposal { q := proposal(1, 1, 2, 3); q.Members[1].PeerURL = "https://10.9.9.9:2380"; return q }(), now, false, "lists this node as"},
		{"seed not first: malformed", local(2), func() Proposal { q := proposal(1, 1, 2, 3); q.Seed = "id-2"; return q }(), now, false, "malformed"},
		{"members out of order: malformed", local(2), proposal(1, 2, 1, 3), now, false, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := cmp.Diff(nil, tt.local)
			grant, reason, next := DecidePromise(tt.local, PromiseRequest{Proposal: tt.req}, tt.now)
			if grant != tt.grant || !strings.Contains(reason, tt.reason) {
				t.Errorf("got (%v, %q), want (%v, ...%q...)", grant, reason, tt.grant, tt.reason)
			}
			if cmp.Diff(nil, tt.local) != before {
				t.Errorf("DecidePromise modified its input")
			}
			cur := next.current()
			switch {
			case grant && (cur == nil || !cur.Proposal.Same(tt.req) || !tt.now.Before(cur.Expires)):
				t.Errorf("granted, but the state to persist holds no live promise to the request: %+v", next)
			case !grant && cmp.Diff(tt.local.State, next) != "":
				t.Errorf("refused, but the state changed: %s", cmp.Diff(tt.local.State, next))
			}
		})
	}
}

func TestPromiseExpiry(t *testing.T) {
	p := proposal(1, 1, 2, 3)
	_, _, st := DecidePromise(local(2), PromiseRequest{Proposal: p}, t0)
	if got, want := st.Promises[0].Expires, t0.Add(p.TTL); !got.Equal(want) {
		t.Fatalf("expires %v, want %v (grant time + the proposal's TTL)", got, want)
	}
	other := PromiseRequest{Proposal: proposal(1, 0, 2, 3)}
	l := LocalState{Self: self(2), State: st}
	if grant, _, _ := DecidePromise(l, other, t0.Add(p.TTL-time.Nanosecond)); grant {
		t.Errorf("granted another seed just before expiry")
	}
	if grant, _, _ := DecidePromise(l, other, t0.Add(p.TTL)); !grant {
		t.Errorf("refused another seed at expiry")
	}
}

func TestReplyToAndRelease(t *testing.T) {
	a, b, c := proposal(1, 0, 2, 3), proposal(1, 1, 2, 3), proposal(2, 1, 2, 3)
	st := promised(a, b)
	l := LocalState{Self: self(2), State: st}
	st = ReleasePromise(l, PromiseRelease{Proposal: b}, t0.Add(time.Second))
	if !st.Promises[1].Released || !st.Promises[1].Expires.Equal(t0.Add(time.Second)) {
		t.Fatalf("release did not take: %+v", st.Promises[1])
	}
	if l.State.Promises[1].Released {
		t.Fatalf("ReleasePromise modified its input")
	}
	l.State = st
	grant, reason, st := DecidePromise(l, PromiseRequest{Proposal: c}, t0.Add(2*time.Second))
	if !grant {
		t.Fatalf("refused after release: %s", reason)
	}
	r := ReplyTo(PromiseRequest{Proposal: c}, "id-2", grant, reason, st)
	if diff := cmp.Diff([]Proposal{a}, r.Prior); diff != "" {
		t.Errorf("Prior: released and current proposals must be left out (-want +got):\n%s", diff)
	}
}
