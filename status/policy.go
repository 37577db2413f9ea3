package status

import "time"

// NetworkPolicyStatus is the node's NetworkPolicy enforcement as the
// kernel holds it.
type NetworkPolicyStatus struct {
	// Engine names what enforces policy; "" when network.policy is false.
	Engine string `json:"engine,omitempty"`
	// Off is true when network.policy is false: the cluster's CNI
	// enforces policy, or nothing does.
	Off bool `json:"off,omitempty"`
	// Enforcing is true when the engine runs and the filter table's
	// INPUT, FORWARD and OUTPUT jump to its chains.
	Enforcing bool `json:"enforcing"`
	// PolicyChains counts the NetworkPolicies' chains in the kernel,
	// PodChains the local pods' firewall chains.
	PolicyChains int `json:"policy_chains"`
	PodChains    int `json:"pod_chains"`
	// LastSync is when the engine last began a full sync.
	LastSync time.Time `json:"last_sync,omitzero"`
	// Error is why the node does not enforce policy (the agent retries).
	Error string `json:"error,omitempty"`
}
