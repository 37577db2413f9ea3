package status

import "time"

// SnapshotStatus is this control-plane node's scheduled etcd snapshots.
type SnapshotStatus struct {
	// Dir is where they are kept; IntervalSeconds and Retention their
	// schedule (interval 0: off).
	Dir             string  `json:"dir"`
	IntervalSeconds float64 `json:"interval_seconds"`
	Retention       int     `json:"retention"`
	// Count is how many snapshots Dir holds, hand-saved ones included.
	Count int `json:"count"`
	// Last is the newest snapshot of Dir.
	Last *SnapshotInfo `json:"last,omitempty"`
	// Error is why the last scheduled snapshot failed.
	Error string `json:"error,omitempty"`
	// Overdue is true once no snapshot is younger than twice the
	// interval: the verdict is degraded then.
	Overdue bool `json:"overdue,omitempty"`
}

// SnapshotInfo is one snapshot.
type SnapshotInfo struct {
	Name     string    `json:"name"`
	Taken    time.Time `json:"taken"`
	Size     int64     `json:"size"`
	Revision int64     `json:"revision"`
}

// Interval is the schedule's interval.
func (s *SnapshotStatus) Interval() time.Duration {
	return time.Duration(s.IntervalSeconds * float64(time.Second))
}
