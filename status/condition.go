package status

// Reason is a condition's cause, one word a script can match; the
// message beside it is for people and may change.
type Reason string

// The reasons the agent's components report.
const (
	// Formation: the etcd quorum is not formed yet (quorum's waits).
	ReasonWaitForNodes   Reason = "WaitForNodes"
	ReasonWaitForSettle  Reason = "WaitForSettle"
	ReasonWaitForSeed    Reason = "WaitForSeed"
	ReasonWaitForPromise Reason = "WaitForPromise"
	ReasonWaitForRetry   Reason = "WaitForRetry"
	ReasonWaitForCluster Reason = "WaitForCluster"
	ReasonStandby        Reason = "Standby"
	// ReasonProposing: this node is the seed and collects promises.
	ReasonProposing Reason = "Proposing"
	// ReasonRefused: the cluster refuses this node; an operator must act.
	ReasonRefused Reason = "Refused"
	// ReasonJoining: this node asks a member's agent to let it in.
	ReasonJoining Reason = "Joining"
	// ReasonWaitForEtcd: the local etcd member does not answer yet.
	ReasonWaitForEtcd Reason = "WaitForEtcd"
	// ReasonWaitForCredentials: a worker waits for a control-plane agent
	// to sign its certificates.
	ReasonWaitForCredentials Reason = "WaitForCredentials"
	// ReasonWaitForControlPlane: no control-plane node in the gossip view
	// for a worker's API load balancer.
	ReasonWaitForControlPlane Reason = "WaitForControlPlane"
	// ReasonDataLost: etcd's data is gone or unreadable on a node whose
	// member served; an operator must act.
	ReasonDataLost Reason = "DataLost"
	// ReasonFailed: a step failed; the component retries.
	ReasonFailed Reason = "Failed"
)

// Condition is what one component of the agent waits for or cannot do.
type Condition struct {
	// Component names the part of the agent (membership, etcd,
	// control-plane, node, worker-credentials, renewal).
	Component string `json:"component"`
	Reason    Reason `json:"reason"`
	Message   string `json:"message"`
	// Refused is true when only an operator can end it.
	Refused bool `json:"refused,omitempty"`
}
