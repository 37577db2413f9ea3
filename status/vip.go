package status

import (
	"fmt"
	"time"
)

// VIPStatus is the control plane's virtual IP as this control-plane
// node sees it (when one is configured and the daemon answers).
type VIPStatus struct {
	Address   string `json:"address"`
	Interface string `json:"interface,omitempty"`
	// Holder is the node the election chose, as this node's etcd says;
	// "" when none holds it (or etcd did not answer: see Error).
	Holder string `json:"holder,omitempty"`
	// Held is true when this node has the address on its interface.
	Held bool `json:"held"`
	// Since is when this node took it (when Held).
	Since time.Time `json:"since,omitzero"`
	// Candidate is false while this node's API server is not ready: it
	// does not stand for the VIP then.
	Candidate bool `json:"candidate"`
	// Error is the last failure: reading the holder, putting the address
	// on the interface or announcing it.
	Error string `json:"error,omitempty"`
}

// problem is the VIP's part of the verdict: degraded when no node holds
// it (clients of the endpoint get no answer) or when this node failed
// at its part.
func (v *VIPStatus) problem() string {
	switch {
	case v.Error != "":
		return fmt.Sprintf("control-plane VIP %s: %s", v.Address, v.Error)
	case v.Holder == "":
		return fmt.Sprintf("control-plane VIP %s: no node holds it (none of the control-plane nodes with a ready API server won the election yet)", v.Address)
	}
	return ""
}
