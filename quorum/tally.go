package quorum

import (
	"fmt"
	"slices"
	"time"
)

// Round is a seed's round, kept in memory by the agent: the proposal, when
// the requests went out (on the seed's clock) and the replies so far. A
// restarted agent has no round, so it can never commit an old one.
type Round struct {
	Proposal Proposal
	Sent     time.Time
	Replies  []PromiseReply
}

// Outcome is Tally's verdict on a round: Pending, BackOff or Decided.
type Outcome interface {
	fmt.Stringer
	isOutcome()
}

// Pending is an Outcome: answers are missing and there is still time.
type Pending struct {
	Missing []Member
	// Deadline is when the round fails unless every answer is in.
	Deadline time.Time
}

func (Pending) isOutcome() {}

func (p Pending) String() string {
	return fmt.Sprintf("waiting for promises from %s until %s", names(p.Missing), p.Deadline.UTC().Format("15:04:05.000"))
}

// BackOff is an Outcome: the round failed. Persist State (the seed's own
// promise, released), send Release to the other members, drop the round
// and propose again no sooner than Delay from now.
type BackOff struct {
	Delay   time.Duration
	Reason  string
	State   State
	Release PromiseRelease
	To      []Member
}

func (BackOff) isOutcome() {}

func (b BackOff) String() string {
	return fmt.Sprintf("round failed, retrying in %v: %s", b.Delay, b.Reason)
}

// Decided is an Outcome: every candidate promised in time. The seed
// accepts the commit itself (AcceptCommit), persists it, then sends it to
// every other member.
type Decided struct{ Commit Commit }

func (Decided) isOutcome() {}

func (d Decided) String() string {
	return fmt.Sprintf("decided commit %s: %s", d.Commit.ID(), d.Commit.Proposal)
}

// Tally judges a round from the seed's side. The seed commits only if
// every member granted, within half the promise TTL of sending (so every
// promise still holds when the commit is made, even with some clock rate
// difference), the seed's own current promise is still to this round, and
// no member ever promised to another seed's proposal that might have been
// committed without this one being able to tell.
//
// That last check is what keeps two commits from both reaching a majority
// when views differ: a member that promised proposal Q and then this one
// will never start Q's commit (AcceptCommit). If the members of this
// proposal include a majority of Q's members, Q can no longer gather a
// majority; if not, the seed refuses to commit. Exempt are proposals that
// provably were never committed: this seed's own, those of seeds that
// granted this round (a commit holder grants nothing, and a seed's round
// ends before its own promise does), released ones (left out of Prior),
// and those whose seed has since proposed a later attempt that the same
// member promised to.
func Tally(local LocalState, r Round, now time.Time, t Timing, rnd Rand) Outcome {
	t = t.orDefaults()
	p := r.Proposal
	fail := func(format string, args ...any) Outcome {
		st := ReleasePromise(local, PromiseRelease{Proposal: p}, now)
		return BackOff{Delay: backoff(p.Attempt, t, rnd), Reason: fmt.Sprintf(format, args...), State: st,
			Release: PromiseRelease{Proposal: p}, To: slices.DeleteFunc(slices.Clone(p.Members), func(m Member) bool { return m.ID == p.Seed })}
	}
	if c := local.State.Commit; c != nil && c.Proposal.Same(p) {
		return Decided{Commit: *c}
	} else if c != nil {
		return fail("this node already holds commit %s", c.ID())
	}
	if cur := local.State.current(); cur == nil || !cur.Proposal.Same(p) || cur.Released {
		return fail("superseded: this node's current promise is not to %s", p)
	}
	granted := map[NodeID]PromiseReply{p.Seed: ReplyTo(PromiseRequest{Proposal: p}, p.Seed, true, "", local.State)}
	for _, rep := range r.Replies {
		if !rep.Proposal.Same(p) || !p.has(rep.From) || rep.From == p.Seed {
			continue
		}
		if !rep.Granted {
			return fail("%s refused: %s", memberName(p, rep.From), rep.Reason)
		}
		granted[rep.From] = rep
	}
	deadline := r.Sent.Add(p.TTL / 2)
	var missing []Member
	for _, m := range p.Members {
		if _, ok := granted[m.ID]; !ok {
			missing = append(missing, m)
		}
	}
	if !now.Before(deadline) {
		if len(missing) > 0 {
			return fail("no promise from %s within %v", names(missing), p.TTL/2)
		}
		return fail("the promises came too late to commit safely (after %v)", p.TTL/2)
	}
	if len(missing) > 0 {
		return Pending{Missing: missing, Deadline: deadline}
	}
	for _, m := range p.Members {
		prior := granted[m.ID].Prior
		// The latest attempt of each seed this member promised to. Only
		// the member's own promises order a seed's attempts in time: a
		// seed whose state was set aside (an orphaned commit, a removed
		// member) numbers its rounds from 1 again, so another member's
		// higher attempt may be the older round.
		latest := map[NodeID]int{}
		for _, q := range prior {
			latest[q.Seed] = max(latest[q.Seed], q.Attempt)
		}
		for _, q := range prior {
			if q.Seed == p.Seed || p.has(q.Seed) || q.Attempt < latest[q.Seed] {
				continue
			}
			shared := 0
			for _, qm := range q.Members {
				if p.has(qm.ID) {
					shared++
				}
			}
			if shared < majority(len(q.Members)) {
				return fail("%s once promised to %s, which may have been committed and shares only %d of its %d members with this proposal",
					m.Name, q, shared, len(q.Members))
			}
		}
	}
	return Decided{Commit: Commit{Proposal: p, Token: fmt.Sprintf("%016x%016x", rnd.Uint64(), rnd.Uint64())}}
}

// backoff is the delay before a seed's next round: RetryBase doubled per
// attempt, capped at RetryMax, jittered into [d/2, d] so that competing
// seeds fall out of step.
func backoff(attempt int, t Timing, rnd Rand) time.Duration {
	d := t.RetryBase
	for i := 1; i < attempt && d < t.RetryMax; i++ {
		d *= 2
	}
	d = min(d, t.RetryMax)
	half := d / 2
	return half + time.Duration(rnd.Uint64()%uint64(d-half+1))
}

// memberName returns the name of the proposal's member id, or the id.
func memberName(p Proposal, id NodeID) string {
	if i := slices.IndexFunc(p.Members, func(m Member) bool { return m.ID == id }); i >= 0 {
		return p.Members[i].Name
	}
	return string(id)
}
