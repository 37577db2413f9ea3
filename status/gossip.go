package status

import "time"

// GossipMember is one node of the gossip view, as status shows it.
type GossipMember struct {
	Name    string    `json:"name"`
	Address string    `json:"address"`
	Role    string    `json:"role,omitempty"`
	State   string    `json:"state"`
	Since   time.Time `json:"since,omitzero"`
	Phase   string    `json:"phase,omitempty"`
	Version string    `json:"agent_version,omitempty"`
	// EtcdClusterID is the etcd cluster the node's member runs in, in hex.
	EtcdClusterID string `json:"etcd_cluster_id,omitempty"`
	// Error is why the node's metadata could not be read; such a node
	// takes no part in decisions.
	Error string `json:"error,omitempty"`
}
