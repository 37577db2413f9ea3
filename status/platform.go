package status

import "time"

// PlatformGrace is how long the seeded workloads may stay not ready
// before the verdict is degraded: long enough for images to import and
// pods to start after seeding, short enough for on-call to learn of a
// platform that never came up.
const PlatformGrace = 10 * time.Minute

// PlatformStatus is what runs of the seeded platform: its Deployments,
// StatefulSets and DaemonSets (the objects labelled
// app.kubernetes.io/managed-by=ecom-agent), as a control-plane node reads
// them from the API every half minute.
type PlatformStatus struct {
	// Workloads counts the seeded workloads; Ready those available.
	Workloads int `json:"workloads"`
	Ready     int `json:"ready"`
	// NotReady names the first few workloads that are not available,
	// each with its first pod's reason (ErrImagePull, a Pending claim,
	// CrashLoopBackOff, ...).
	NotReady []PlatformProblem `json:"not_ready,omitempty"`
	// NotReadySince is when this node first saw a workload not available
	// (zero while all are).
	NotReadySince time.Time `json:"not_ready_since,omitzero"`
	// Overdue is true once some workload has been not available for
	// PlatformGrace: the verdict is degraded then.
	Overdue bool `json:"overdue,omitempty"`
	// NotSeeded are the platform's workloads the seeder leaves out on
	// this cluster, each with why (Grafana, whose image is not built
	// here, on a cluster that pulls from no registry).
	NotSeeded []PlatformProblem `json:"not_seeded,omitempty"`
	// Error is why the workloads could not be read.
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
}

// PlatformProblem is one workload that is not available and why.
type PlatformProblem struct {
	// Object is "Kind namespace/name".
	Object string `json:"object"`
	Reason string `json:"reason"`
}
