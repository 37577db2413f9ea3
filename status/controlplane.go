package status

import "time"

// ControlPlaneStatus is the local API server's state as the status shows
// it.
type ControlPlaneStatus struct {
	// Ready is true while the local kube-apiserver answers /readyz.
	Ready      bool      `json:"ready"`
	ReadySince time.Time `json:"ready_since,omitzero"`
	// RBAC is true once the bootstrap RBAC is in place (admin.conf's
	// cluster-admin binding among it): admin.conf works from then on.
	RBAC bool `json:"rbac"`
	// Readyz is what /readyz says when it is not ready (the failing
	// checks), or why it could not be asked.
	Readyz string `json:"readyz,omitempty"`
	// Error says why the control plane is not up and what to do: a
	// missing binary, a version skew, or, past apiserver.ready_timeout,
	// the unhealthy unit with the last lines of its journal in Journal.
	Error    string   `json:"error,omitempty"`
	Journal  []string `json:"journal,omitempty"`
	Binaries []Binary `json:"binaries,omitempty"`
}

// SeedStatus summarises the last seeding pass of the cluster.
type SeedStatus struct {
	Enabled bool `json:"enabled"`
	// Leader is true while this node holds the seeding Lease.
	Leader   bool           `json:"leader"`
	Seeder   string         `json:"seeder,omitempty"`
	Finished time.Time      `json:"finished,omitzero"`
	Counts   map[string]int `json:"counts,omitempty"`
	// Problems lists the files that did not parse and the objects that
	// failed or were skipped, with why.
	Problems []string `json:"problems,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// Binary is one Kubernetes program a node runs, with the version it
// reports.
type Binary struct {
	Name    string `json:"name"`
	Path    string `json:"path"`
	Version string `json:"version,omitempty"`
}
