package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"

	"github.com/google/uuid"
	"github.com/hashicorp/memberlist"

	"github.com/ecom-platform/ecom-agent/config"
)

// Meta is what a node tells the others about itself. It travels in
// memberlist's node metadata, which is capped at memberlist.MetaMaxSize
// (512) bytes; encoding refuses values that could not fit.
type Meta struct {
	// NodeID is the UUID the agent persists in its state directory; a
	// reinstalled host gets a new one.
	NodeID string
	// NodeName is the memberlist node name. It is not encoded: memberlist
	// carries it, and decoding fills it in.
	NodeName string
	// Role is control-plane or worker.
	Role config.Role
	// Expect is the node's configured size of the first etcd quorum.
	Expect int
	// EtcdClusterID is the etcd cluster the node belongs to; 0 means none
	// known yet.
	EtcdClusterID uint64
	// HasEtcdData reports whether the node has etcd state (a WAL) on disk.
	HasEtcdData bool
	// CommitID identifies the etcd formation commit the node holds (the
	// cluster token), "" if none, so holders find candidates that missed
	// it and orphaned commits are recognised.
	CommitID string
	// Phase is the node's bootstrap phase, a short token
	// ("waiting-for-peers").
	Phase string
	// Version is the agent's version.
	Version string
	// ClusterName is the cluster the node was configured for.
	ClusterName string
	// RPCAddr is where the agent's authenticated RPC endpoint listens.
	RPCAddr netip.AddrPort
	// Counter grows with every update the node makes to its metadata
	// (SetLocalMeta); it starts again at 1 when the agent restarts.
	Counter uint64
	// Leaving is set by Leave just before the node leaves, so the others
	// can tell a graceful leave from a failure.
	Leaving bool
}

// wireMeta is Meta's encoding: JSON with one-letter keys. Decoding
// ignores keys it does not know, so newer agents can add fields; they must
// never change the meaning of an existing key.
type wireMeta struct {
	NodeID        string `json:"i"`
	Role          string `json:"r"`
	Expect        int    `json:"e,omitempty"`
	EtcdClusterID uint64 `json:"c,omitempty"`
	HasEtcdData   bool   `json:"w,omitempty"`
	CommitID      string `json:"k,omitempty"`
	Phase         string `json:"p,omitempty"`
	Version       string `json:"v,omitempty"`
	ClusterName   string `json:"n"`
	RPCAddr       string `json:"a,omitempty"`
	Counter       uint64 `json:"g"`
	Leaving       bool   `json:"l,omitempty"`
}

// Limits of Meta's strings, in bytes. With them the worst case encodes to
// well under memberlist.MetaMaxSize (see TestMetaWorstCaseFits).
const (
	maxPhaseLen   = 32
	maxCommitLen  = 64
	maxVersionLen = 64
	maxClusterLen = 63 // a DNS label, like config's cluster_name
	maxExpect     = 999
)

// encodeMeta checks m and encodes it.
func encodeMeta(m Meta) ([]byte, error) {
	if _, err := uuid.Parse(m.NodeID); err != nil || len(m.NodeID) != 36 {
		return nil, fmt.Errorf("node ID %q is not a UUID", m.NodeID)
	}
	if m.Role != config.RoleControlPlane && m.Role != config.RoleWorker {
		return nil, fmt.Errorf("role %q is neither %q nor %q", m.Role, config.RoleControlPlane, config.RoleWorker)
	}
	if m.Expect < 0 || m.Expect > maxExpect {
		return nil, fmt.Errorf("expect %d is not in 0-%d", m.Expect, maxExpect)
	}
	for _, f := range []struct {
		name, value string
		limit       int
	}{
		{"phase", m.Phase, maxPhaseLen},
		{"commit ID", m.CommitID, maxCommitLen},
		{"version", m.Version, maxVersionLen},
		{"cluster name", m.ClusterName, maxClusterLen},
	} {
		if err := checkToken(f.value, f.limit); err != nil {
			return nil, fmt.Errorf("%s %q: %w", f.name, f.value, err)
		}
	}
	if m.RPCAddr.Addr().Zone() != "" {
		// A zone is only meaningful on this host, and unbounded in size.
		return nil, fmt.Errorf("RPC address %s has a zone", m.RPCAddr)
	}
	w := wireMeta{
		NodeID:        m.NodeID,
		Role:          string(m.Role),
		Expect:        m.Expect,
		EtcdClusterID: m.EtcdClusterID,
		HasEtcdData:   m.HasEtcdData,
		CommitID:      m.CommitID,
		Phase:         m.Phase,
		Version:       m.Version,
		ClusterName:   m.ClusterName,
		Counter:       m.Counter,
		Leaving:       m.Leaving,
	}
	if m.RPCAddr.IsValid() {
		w.RPCAddr = m.RPCAddr.String()
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		// The limits above make this unreachable; keep memberlist from
		// panicking if they ever drift.
		return nil, fmt.Errorf("metadata is %d bytes, more than memberlist's %d", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// checkToken accepts short strings of characters that JSON carries
// unescaped, so their encoded size is their length.
func checkToken(s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("longer than %d bytes", limit)
	}
	for _, r := range s {
		ok := 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-._+:~/", r)
		if !ok {
			return fmt.Errorf("has %q; use letters, digits and -._+:~/", r)
		}
	}
	return nil
}

// decodeMeta decodes the metadata memberlist carries for the node name.
// Keys it does not know are ignored.
func decodeMeta(name string, b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{NodeName: name}, errors.New("node has no metadata (not an ecom-agent?)")
	}
	var w wireMeta
	if err := json.Unmarshal(b, &w); err != nil {
		return Meta{NodeName: name}, fmt.Errorf("decode metadata: %w", err)
	}
	m := Meta{
		NodeID:        w.NodeID,
		NodeName:      name,
		Role:          config.Role(w.Role),
		Expect:        w.Expect,
		EtcdClusterID: w.EtcdClusterID,
		HasEtcdData:   w.HasEtcdData,
		CommitID:      w.CommitID,
		Phase:         w.Phase,
		Version:       w.Version,
		ClusterName:   w.ClusterName,
		Counter:       w.Counter,
		Leaving:       w.Leaving,
	}
	if !config.ValidNodeName(name) {
		return m, fmt.Errorf("node name %q is not a valid node name (a DNS subdomain)", name)
	}
	if _, err := uuid.Parse(w.NodeID); err != nil {
		return m, fmt.Errorf("metadata: node ID %q is not a UUID", w.NodeID)
	}
	for _, f := range []struct{ key, v string }{{"phase", w.Phase}, {"version", w.Version}, {"cluster name", w.ClusterName}} {
		if !printable(f.v) {
			return m, fmt.Errorf("metadata: %s %q holds characters that are not printable", f.key, f.v)
		}
	}
	if w.RPCAddr != "" {
		a, err := netip.ParseAddrPort(w.RPCAddr)
		if err != nil {
			return m, fmt.Errorf("metadata: RPC address: %w", err)
		}
		m.RPCAddr = a
	}
	return m, nil
}

// printable reports whether s holds printable characters only, so no
// terminal escape reaches `ecom-agent status` or a log line.
func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
