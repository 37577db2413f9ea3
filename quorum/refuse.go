package quorum

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Refusal is a peer refused because it disagrees with the local node on
// something that must match. Both sides compute it from the same gossip
// metadata, so each reports the other: the refusal is visible on both.
type Refusal struct {
	Peer Member
	// Field is what differs: "cluster name", "expect" or "cluster ID";
	// or "node ID" for a node ID that several alive nodes claim.
	Field  string
	Theirs string
	Ours   string
}

// String reads "refuse peer cp-4: expect 5 != 3", or for a duplicate
// node ID "refuse peer cp-4: node ID 1234 is claimed by cp-2, cp-4".
func (r Refusal) String() string {
	if r.Field == FieldNodeID {
		return fmt.Sprintf("refuse peer %s: node ID %s is claimed by %s (a copied state file, or an impostor)", r.Peer.Name, r.Peer.ID, r.Theirs)
	}
	return fmt.Sprintf("refuse peer %s: %s %s != %s", r.Peer.Name, r.Field, r.Theirs, r.Ours)
}

// FieldNodeID is the Field of a duplicate node ID's Refusal.
const FieldNodeID = "node ID"

// nodeIDClaims maps each node ID to the names of the alive nodes that
// claim it, this node included.
func nodeIDClaims(self Self, peers []Peer) map[NodeID][]string {
	out := map[NodeID][]string{self.ID: {self.Name}}
	for _, p := range peers {
		if p.Status.failed() || slices.Contains(out[p.ID], p.Name) {
			continue
		}
		out[p.ID] = append(out[p.ID], p.Name)
	}
	for _, names := range out {
		slices.Sort(names)
	}
	return out
}

// duplicateIDRefusal reports a peer whose node ID other alive nodes claim.
func duplicateIDRefusal(peer Member, names []string) Refusal {
	return Refusal{Peer: peer, Field: FieldNodeID, Theirs: strings.Join(names, ", ")}
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
