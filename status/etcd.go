package status

// EtcdStatus is what etcd says about its cluster, as this node sees it.
type EtcdStatus struct {
	ClusterID string       `json:"cluster_id"`
	Leader    string       `json:"leader,omitempty"`
	RaftIndex uint64       `json:"raft_index"`
	RaftTerm  uint64       `json:"raft_term"`
	DBSize    int64        `json:"db_size_bytes"`
	Members   []EtcdMember `json:"members"`
}

// EtcdMember is one member of the etcd cluster.
type EtcdMember struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls,omitempty"`
	Learner    bool     `json:"learner"`
	Leader     bool     `json:"leader"`
	// Started is false for a member added but not yet running.
	Started bool `json:"started"`
	// Healthy is true when the member's own client URL answered a status
	// request just now; Error says why not. DBSize, RaftIndex and
	// RaftTerm are what it answered.
	Healthy   bool   `json:"healthy"`
	Error     string `json:"error,omitempty"`
	DBSize    int64  `json:"db_size_bytes,omitempty"`
	RaftIndex uint64 `json:"raft_index,omitempty"`
	RaftTerm  uint64 `json:"raft_term,omitempty"`
}
