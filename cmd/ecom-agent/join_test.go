package main

import (
	"testing"

	"github.com/ecom-platform/ecom-agent/agent/workercreds"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
)

// TestReached: join returns on a control-plane node only once admin.conf
// works (the bootstrap RBAC is in place), not as soon as the API
// server is ready; a standby is where join takes it, and a worker once it
// holds its credentials.
func TestReached(t *testing.T) {
	cp := &config.Config{Role: config.RoleControlPlane}
	worker := &config.Config{Role: config.RoleWorker}
	etcd := &status.EtcdStatus{Leader: "cp-1"}
	for _, tc := range []struct {
		name string
		cfg  *config.Config
		st   status.Status
		want bool
	}{
		{"api ready, no RBAC yet", cp, status.Status{Phase: nodestate.PhaseAPIReady, Etcd: etcd, ControlPlane: &status.ControlPlaneStatus{Ready: true}}, false},
		{"api ready, RBAC in place", cp, status.Status{Phase: nodestate.PhaseAPIReady, Etcd: etcd, ControlPlane: &status.ControlPlaneStatus{Ready: true, RBAC: true}}, true},
		{"no etcd leader", cp, status.Status{Phase: nodestate.PhaseAPIReady, Etcd: &status.EtcdStatus{}, ControlPlane: &status.ControlPlaneStatus{Ready: true, RBAC: true}}, false},
		{"standby", cp, status.Status{Phase: nodestate.PhaseStandby}, true},
		{"worker with its credentials", worker, status.Status{Phase: nodestate.PhaseWorkerWaiting}, true},
		{"worker waiting for its credentials", worker, status.Status{Phase: nodestate.PhaseWorkerWaiting,
			Conditions: []status.Condition{{Component: workercreds.Name, Reason: status.ReasonWaitForCredentials}}}, false},
		{"worker refused", worker, status.Status{Phase: nodestate.PhaseWorkerWaiting,
			Conditions: []status.Condition{{Component: workercreds.Name, Reason: status.ReasonRefused, Refused: true}}}, false},
		{"worker with credentials, waiting for an API server", worker, status.Status{Phase: nodestate.PhaseWorkerWaiting,
			Conditions: []status.Condition{{Component: workercreds.Name, Reason: status.ReasonWaitForControlPlane}}}, true},
		{"control-plane phase on a worker", worker, status.Status{Phase: nodestate.PhaseAPIReady}, false},
	} {
		if got := reached(tc.cfg, tc.st); got != tc.want {
			t.Errorf("%s: reached = %v, want %v", tc.name, got, tc.want)
		}
	}
}
