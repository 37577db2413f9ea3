// Package peer is the channel ecom-agent's nodes use to ask each other to
// act: the promises and commits that form the etcd quorum, shipping the
// cluster's CA keys to other control-plane nodes, asking a member's agent
// for a learner add, having a CSR signed. Gossip carries who is alive;
// anything that must not be replayed goes through here.
//
// A call is an HTTP/1.1 POST to /v1/peer/{method} whose body is a JSON
// envelope (protocol version, method, direction, sender, timestamp, random
// request ID, body) sealed with AES-256-GCM under a key derived from the
// cluster secret and the cluster name (see DeriveKey). The answer is an
// envelope sealed the same way and bound to the request's method and ID.
// Handler errors travel sealed as *RemoteError; a request that fails any
// check before its handler runs gets a bare HTTP 403.
//
// Threat model. The network between nodes is hostile: anyone on it can
// read, drop, delay, replay and forge packets. The cluster secret is what
// tells cluster nodes from everyone else: without it (and the cluster
// name) one can neither read a message nor make one that a receiver
// accepts, and a captured request is accepted at most once, and only
// within ReplayWindow (2 minutes) of the time its sender stamped on it:
// receivers reject timestamps further from their own clock, so nodes need
// NTP, and remember request IDs for as long as they could be accepted.
// Responses cannot be replayed, as each is bound to a fresh request ID.
// Anyone who holds the secret is trusted as a cluster node: the sender's
// node ID and name are claims made by a key holder, not proven identities,
// so a compromised node compromises the cluster. A request made with Call
// names no receiver and could, within the window, be replayed once to
// each other node; CallNode binds the receiver's node ID. The channel does
// not hide who talks to whom, when, or how much, cannot stop an attacker
// on the path from blocking calls (callers retry), and has no forward
// secrecy: whoever learns the secret later can read recorded traffic.
//
// Box is the same sealing for other uses, such as the CA key bundle,
// which is sealed again under its own key so that a copy captured from any
// channel or disk is useless without the secret.
package peer
