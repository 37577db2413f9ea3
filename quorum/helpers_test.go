package quorum

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// t0 is the tests' reference time; views are dated relative to it.
var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

func member(i int) Member {
	return Member{ID: NodeID(fmt.Sprintf("id-%d", i)), Name: fmt.Sprintf("cp-%d", i), PeerURL: fmt.Sprintf("https://10.0.0.%d:2380", i)}
}

func self(i int) Self { return Self{Member: member(i), ClusterName: "prod", Expect: 3} }

func local(i int) LocalState { return LocalState{Self: self(i)} }

// peer is control-plane node i, alive since t0, agreeing on everything.
func peer(i int, opts ...func(*Peer)) Peer {
	p := Peer{Member: member(i), ControlPlane: true, ClusterName: "prod", Expect: 3, Status: StatusAlive, Since: t0}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func withStatus(s Status, since time.Time) func(*Peer) {
	return func(p *Peer) { p.Status, p.Since = s, since }
}
func withCluster(id uint64) func(*Peer) {
	return func(p *Peer) { p.ClusterID, p.HasEtcdState = id, true }
}
func withCommit(id string) func(*Peer) { return func(p *Peer) { p.CommitID = id } }
func withExpect(n int) func(*Peer)     { return func(p *Peer) { p.Expect = n } }
func withName(name string) func(*Peer) { return func(p *Peer) { p.ClusterName = name } }
func withData() func(*Peer)            { return func(p *Peer) { p.HasEtcdState = true } }
func withID(id NodeID) func(*Peer)     { return func(p *Peer) { p.ID = id } }
func asWorker() func(*Peer)            { return func(p *Peer) { p.ControlPlane = false } }
func peers(ids ...int) []Peer {
	var out []Peer
	for _, i := range ids {
		out = append(out, peer(i))
	}
	return out
}

// proposal is seed's proposal of the given members (IDs sorted as given).
func proposal(attempt int, ids ...int) Proposal {
	p := Proposal{Seed: member(ids[0]).ID, Attempt: attempt, ClusterName: "prod", Expect: len(ids), TTL: 30 * time.Second}
	for _, i := range ids {
		p.Members = append(p.Members, member(i))
	}
	return p
}

// promised returns a state holding promises to ps, granted at t0.
func promised(ps ...Proposal) State {
	var st State
	for _, p := range ps {
		st.Promises = append(st.Promises, Promise{Proposal: p, Granted: t0, Expires: t0.Add(p.TTL)})
	}
	return st
}

func testRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
}

const testToken = "00112233445566778899aabbccddeeff"

func commitOf(p Proposal) Commit { return Commit{Proposal: p, Token: testToken} }
