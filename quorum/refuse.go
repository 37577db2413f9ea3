package quorum

import (
	"fmt"
	"strconv"
)

// Refusal is a peer refused because it disagrees with the local node on
// something that must match. Both sides compute it from the same gossip
// metadata, so each reports the other: the refusal is visible on both.
type Refusal struct {
	Peer Member
	// Field is what differs: "cluster name", "expect" or "cluster ID".
	Field  string
	Theirs string
	Ours   string
}

// String reads "refuse peer cp-4: expect 5 != 3".
func (r Refusal) String() string {
	return fmt.Sprintf("refuse peer %s: %s %s != %s", r.Peer.Name, r.Field, r.Theirs, r.Ours)
}

// Mismatch reports whether peer disagrees with self on the cluster name or,
// for a control-plane peer, on expect, and how. Gossip encryption already
// keeps out nodes without the cluster secret; these are the checks left
// to this package.
func Mismatch(self Self, peer Peer) (Refusal, bool) {
	switch {
	case peer.ClusterName != self.ClusterName:
		return Refusal{Peer: peer.Member, Field: "cluster name", Theirs: strconv.Quote(peer.ClusterName), Ours: strconv.Quote(self.ClusterName)}, true
	case peer.ControlPlane && peer.Expect != self.Expect:
		return Refusal{Peer: peer.Member, Field: "expect", Theirs: strconv.Itoa(peer.Expect), Ours: strconv.Itoa(self.Expect)}, true
	}
	return Refusal{}, false
}

// clusterIDRefusal reports a peer whose etcd belongs to another cluster.
func clusterIDRefusal(peer Member, theirs, ours uint64) Refusal {
	return Refusal{Peer: peer, Field: "cluster ID", Theirs: fmt.Sprintf("%x", theirs), Ours: fmt.Sprintf("%x", ours)}
}
