package nodestate

import (
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
)

// ManagedUnits lists the units a node runs in state st, in start order:
// its etcd member once the membership is decided, the control plane once
// its units are installed, the node side once its units are.
func (st *State) ManagedUnits(cfg *config.Config) []string {
	if st == nil {
		return nil
	}
	var u []string
	if cfg.IsControlPlane() && st.Etcd != nil {
		u = append(u, bootstrap.UnitsOf(cfg, bootstrap.GroupEtcd)...)
		if st.ControlPlaneUnits {
			u = append(u, bootstrap.UnitsOf(cfg, bootstrap.GroupControlPlane)...)
		}
	}
	if st.NodeUnits {
		u = append(u, bootstrap.UnitsOf(cfg, bootstrap.GroupNode)...)
	}
	return u
}
