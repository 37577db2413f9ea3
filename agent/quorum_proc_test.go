package agent

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/nodestate"
)

// iterations is how many randomized runs a race case makes
// ($ECOM_QUORUM_ITERATIONS, default 2; each forms a real cluster).
func iterations(t *testing.T) int {
	n, err := strconv.Atoi(cmp.Or(os.Getenv("ECOM_QUORUM_ITERATIONS"), "2"))
	if err != nil || n < 1 {
		t.Fatalf("ECOM_QUORUM_ITERATIONS=%q", os.Getenv("ECOM_QUORUM_ITERATIONS"))
	}
	return n
}

// Cases 2 and 3 of quorum.md with real agents and etcd: three
// control-plane nodes and a fourth racing in, started in a random order
// at random moments: always one cluster of three voters, the fourth on
// standby.
func TestRealQuorumRandomStartOrders(t *testing.T) {
	for i := range iterations(t) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := newProcCluster(t, 4, 3)
			for _, j := range rand.Perm(4) {
				time.Sleep(time.Duration(rand.IntN(800)) * time.Millisecond)
				c.nodes[j].start(t)
			}
			c.await(time.Minute, "one 3-voter cluster and a standby", formed(4))
		})
	}
}

// Case 4: split views injected into gossip: each node has peers hidden
// from its view for a few seconds, differently on every node, so nodes
// see different candidate sets while they settle. Never two clusters
// with quorum; once the views heal, one cluster of three.
func TestRealQuorumSplitViews(t *testing.T) {
	for i := range iterations(t) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := newProcCluster(t, 4, 3)
			until := time.Now().Add(6 * time.Second)
			for _, n := range c.nodes {
				for _, o := range c.nodes {
					if o != n && rand.IntN(2) == 0 {
						n.spec.Hide = append(n.spec.Hide, o.name)
					}
				}
				n.spec.Until = until
			}
			for _, n := range c.nodes {
				n.start(t)
			}
			c.await(time.Minute, "one 3-voter cluster and a standby", formed(4))
		})
	}
}

// Case 5: the seed crashes right after collecting its promises, before
// it commits. Its promises expire, another seed proceeds; the old seed,
// restarted, joins that cluster instead of bootstrapping one.
func TestRealQuorumSeedKilledAfterPromises(t *testing.T) {
	c := newProcCluster(t, 4, 3)
	for _, n := range c.nodes {
		n.spec.CrashAt = "promises-collected"
		n.start(t)
	}
	seed := c.awaitCrash(time.Minute)
	time.Sleep(2 * time.Second)
	seed.start(t)
	c.await(2*time.Minute, "one 3-voter cluster and a standby after the seed's crash", formed(4))
	if st, err := seed.status(); err != nil || (st.Phase != nodestate.PhaseStandby && st.Etcd == nil) {
		t.Errorf("the crashed seed %s: %+v %v", seed.name, st.Phase, err)
	}
}

// Case 6: the seed crashes right after its commit reached one peer (the
// others' stall). The commit spreads from that peer, the cluster forms,
// and the seed, restarted, resumes from what it persisted.
func TestRealQuorumSeedKilledAfterCommitToOnePeer(t *testing.T) {
	c := newProcCluster(t, 3, 3)
	for _, n := range c.nodes {
		n.spec.CrashAt = "commit-delivered"
		n.spec.OneCommit = true
		n.start(t)
	}
	seed := c.awaitCrash(time.Minute)
	time.Sleep(time.Second)
	seed.spec.CrashAt, seed.spec.OneCommit = "", false
	seed.start(t)
	c.await(2*time.Minute, "one 3-voter cluster with the seed in it", formed(3))
}

// Cases 8 and 12: a member dies for good while two standbys wait. Past
// DeadAfter exactly one standby is added, as a learner, the dead member
// removed and the learner promoted, one change at a time (never two
// learners, never more than four members listed); the other standby
// stays standby.
func TestRealQuorumDeadMemberReplacedOneChangeAtATime(t *testing.T) {
	c := newProcCluster(t, 5, 3)
	for _, n := range c.nodes {
		n.start(t)
	}
	v := c.await(time.Minute, "one 3-voter cluster and two standbys", formed(5))
	var dead *procNode
	for _, nodes := range v.ids {
		for _, n := range c.nodes {
			if n.name == nodes[0] {
				dead = n
			}
		}
	}
	dead.killAll()
	t.Logf("killed member %s", dead.name)
	c.await(2*time.Minute, "the dead member replaced", func(v view) error {
		if v.learners > 1 || v.listed > 4 {
			t.Fatalf("two changes at once: %d learners, %d members listed", v.learners, v.listed)
		}
		for id, nodes := range v.ids {
			if len(nodes) != 3 || v.voters[id] != 3 || slices.Contains(nodes, dead.name) || v.listed != 3 {
				return fmt.Errorf("cluster %s: members %v, %d started voters, %d listed", id, nodes, v.voters[id], v.listed)
			}
		}
		if len(v.standby) != 1 {
			return fmt.Errorf("standby %v", v.standby)
		}
		return nil
	})
}

// awaitCrash waits for one agent to crash at its hook (exit status 3)
// and returns it.
func (c *procCluster) awaitCrash(limit time.Duration) *procNode {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n.exited() {
				if code := n.cmd.ProcessState.ExitCode(); code != 3 {
					c.t.Fatalf("%s exited with %d, not at its crash hook", n.name, code)
				}
				c.t.Logf("%s crashed at its hook", n.name)
				return n
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("no agent crashed at its hook within %s", limit)
	return nil
}
