package quorum

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// seedOf returns the seed's local state after it granted itself p.
func seedOf(i int, p Proposal, earlier ...Proposal) LocalState {
	return LocalState{Self: self(i), State: promised(append(earlier, p)...)}
}

func grants(p Proposal, from ...int) []PromiseReply {
	var out []PromiseReply
	for _, i := range from {
		out = append(out, PromiseReply{From: member(i).ID, Proposal: p, Granted: true})
	}
	return out
}

func TestTally(t *testing.T) {
	p := proposal(1, 1, 2, 3) // TTL 30s: the seed must commit within 15s of sending
	sent := t0
	soon := t0.Add(time.Second)
	withPrior := func(rs []PromiseReply, i int, prior ...Proposal) []PromiseReply {
		rs[i].Prior = prior
		return rs
	}
	tests := []struct {
		name    string
		local   LocalState
		replies []PromiseReply
		now     time.Time
		want    string // Outcome type, and for BackOff a substring of the reason
	}{
		{"all granted in time: decided", seedOf(1, p), grants(p, 2, 3), soon, "Decided"},
		{"one missing: pending", seedOf(1, p), grants(p, 2), soon, "Pending"},
		{"one missing at the deadline: back off", seedOf(1, p), grants(p, 2), sent.Add(15 * time.Second), "BackOff no promise from cp-3"},
		{"all granted, but too late: back off", seedOf(1, p), grants(p, 2, 3), sent.Add(15 * time.Second), "BackOff too late"},
		{"one refusal: back off at once", seedOf(1, p), append(grants(p, 2), PromiseReply{From: "id-3", Proposal: p, Reason: "promised to seed cp-0"}), soon, "BackOff cp-3 refused: promised to seed cp-0"},
		{"replies to another proposal are ignored", seedOf(1, p), append(grants(p, 2), grants(proposal(2, 1, 2, 3), 3)...), soon, "Pending"},
		{"replies from non-members are ignored", seedOf(1, p), append(grants(p, 2), grants(p, 4)...), soon, "Pending"},
		{"own promise moved on: back off", seedOf(1, proposal(2, 1, 2, 3), p), grants(p, 2, 3), soon, "BackOff superseded"},
		{"own promise released: back off", func() LocalState { l := seedOf(1, p); l.State.Promises[0].Released = true; return l }(), grants(p, 2, 3), soon, "BackOff superseded"},
		{"already holds another commit: back off", func() LocalState {
			l := seedOf(1, p)
			l.State.Commit = &Commit{Proposal: proposal(1, 0, 1, 2), Token: testToken}
			return l
		}(), grants(p, 2, 3), soon, "BackOff already holds"},
		{"a member once promised a proposal sharing 1 of 3 members: refuses to commit",
			seedOf(1, p), withPrior(grants(p, 2, 3), 1, proposal(1, 0, 3, 4)), soon, "BackOff cp-3 once promised to seed cp-0 attempt 1 (cp-0, cp-3, cp-4), which may have been committed and shares only 1 of its 3 members"},
		{"the seed itself once promised such a proposal: refuses to commit",
			seedOf(1, p, proposal(1, 0, 1, 4)), grants(p, 2, 3), soon, "BackOff cp-1 once promised"},
		{"a prior proposal sharing 2 of 3 members: commits (it can no longer reach a majority)",
			seedOf(1, p), withPrior(grants(p, 2, 3), 1, proposal(1, 0, 2, 3)), soon, "Decided"},
		{"a prior proposal of a seed that granted this round: commits",
			seedOf(1, p), withPrior(grants(p, 2, 3), 1, proposal(1, 2, 3, 4)), soon, "Decided"},
		{"a prior proposal superseded by its seed's later attempt, promised by the same member: commits",
			seedOf(1, p), withPrior(grants(p, 2, 3), 1, proposal(1, 0, 3, 4), proposal(2, 0, 2, 3)), soon, "Decided"},
		// A seed numbers its rounds from 1 again once its state is set
		// aside (an orphaned commit, a removed member), so another
		// member's higher attempt of that seed may be the older round,
		// and the lower one may be in progress now.
		{"a prior proposal whose seed's higher attempt only another member promised to: refuses to commit",
			seedOf(1, p), withPrior(withPrior(grants(p, 2, 3), 1, proposal(1, 0, 3, 4)), 0, proposal(2, 0, 2, 3)), soon, "BackOff cp-3 once promised to seed cp-0 attempt 1 (cp-0, cp-3, cp-4)"},
		{"a prior proposal of this seed: commits",
			seedOf(1, p, proposal(1, 1, 4, 5)), grants(p, 2, 3), soon, "Decided"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Round{Proposal: p, Sent: sent, Replies: tt.replies}
			got := Tally(tt.local, r, tt.now, DefaultTiming(), testRand(1))
			desc := outcomeKind(got)
			if b, ok := got.(BackOff); ok {
				desc += " " + b.Reason
			}
			want := strings.Fields(tt.want)
			if !strings.HasPrefix(desc, want[0]) || !strings.Contains(desc, strings.Join(want[1:], " ")) {
				t.Errorf("got %s\nwant %s", desc, tt.want)
			}
			if b, ok := got.(BackOff); ok {
				if diff := cmp.Diff([]Member{member(2), member(3)}, b.To); diff != "" {
					t.Errorf("BackOff must release the other members (-want +got):\n%s", diff)
				}
				if i := b.State.index(p); i >= 0 && !b.State.Promises[i].Released {
					t.Errorf("BackOff must release the seed's own promise: %+v", b.State.Promises[i])
				}
			}
		})
	}
}

func outcomeKind(o Outcome) string {
	switch o.(type) {
	case Pending:
		return "Pending"
	case BackOff:
		return "BackOff"
	case Decided:
		return "Decided"
	}
	return "unknown"
}

func TestTallyCommit(t *testing.T) {
	p := proposal(1, 1, 2, 3)
	r := Round{Proposal: p, Sent: t0, Replies: grants(p, 3, 2)}
	got := Tally(seedOf(1, p), r, t0.Add(time.Second), DefaultTiming(), testRand(7))
	d, ok := got.(Decided)
	if !ok {
		t.Fatalf("got %v, want Decided", got)
	}
	if !d.Commit.Proposal.Same(p) || len(d.Commit.Token) != 32 {
		t.Errorf("commit %+v: want the proposal and a 128-bit token", d.Commit)
	}
	again := Tally(seedOf(1, p), r, t0.Add(time.Second), DefaultTiming(), testRand(7)).(Decided)
	other := Tally(seedOf(1, p), r, t0.Add(time.Second), DefaultTiming(), testRand(8)).(Decided)
	if again.Commit.Token != d.Commit.Token || other.Commit.Token == d.Commit.Token {
		t.Errorf("the token must come from the injected random source: %s %s %s", d.Commit.Token, again.Commit.Token, other.Commit.Token)
	}
	// Once the seed holds the commit, tallying the round again returns it
	// (and never releases a committed proposal).
	l := seedOf(1, p)
	l.State.Commit = &d.Commit
	if got := Tally(l, r, t0.Add(time.Hour), DefaultTiming(), testRand(9)); cmp.Diff(Outcome(d), got) != "" {
		t.Errorf("after commit: got %v, want the same Decided", got)
	}
}

// The back-off doubles per attempt up to RetryMax and is jittered into
// [d/2, d], from the injected random source.
func TestBackoffJitter(t *testing.T) {
	tm := DefaultTiming()
	rnd := testRand(3)
	seen := map[time.Duration]bool{}
	for i := range 2000 {
		attempt := 1 + i%10
		d := tm.RetryBase << min(attempt-1, 5)
		d = min(d, tm.RetryMax)
		got := backoff(attempt, tm, rnd)
		if got < d/2 || got > d {
			t.Fatalf("attempt %d: backoff %v outside [%v, %v]", attempt, got, d/2, d)
		}
		seen[got] = true
	}
	if len(seen) < 1000 {
		t.Errorf("only %d distinct delays in 2000 draws: not jittered", len(seen))
	}
}
