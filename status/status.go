package status

import (
	"fmt"
	"time"

	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/units"
)

// StatusSchemaVersion is the version of the Status JSON document. Fields
// are only ever added within a version; a removal or change of meaning
// bumps it.
const StatusSchemaVersion = 1

// Verdict is a node's health in one word.
type Verdict string

// Verdicts, most severe last.
const (
	Healthy  Verdict = "healthy"
	Degraded Verdict = "degraded"
	Down     Verdict = "down"
)

// Status is the node's health as `ecom-agent status` shows it and the
// control socket serves it.
type Status struct {
	SchemaVersion int `json:"schema_version"`
	// Source is "daemon" when the running agent answered, "local" when
	// status read the state file and systemd itself.
	Source string          `json:"source"`
	Node   Node            `json:"node"`
	Phase  nodestate.Phase `json:"phase"`
	// PhaseSince is when the node entered Phase.
	PhaseSince time.Time `json:"phase_since,omitzero"`
	// StartedAt is when the daemon started (zero when it is not running).
	StartedAt time.Time `json:"started_at,omitzero"`
	// Verdict is healthy, degraded or down; Reasons say why, worst first.
	Verdict Verdict  `json:"verdict"`
	Reasons []string `json:"reasons,omitempty"`
	// Waiting says what the node waits for, if anything: the message of
	// the first condition that waits.
	Waiting string `json:"waiting,omitempty"`
	// Conditions are what the agent's components wait for or cannot do,
	// each with a reason a script can match (see Reason).
	Conditions []Condition  `json:"conditions,omitempty"`
	Units      []UnitReport `json:"units"`
	// Gossip lists the nodes of the gossip view, this one included (only
	// when the daemon answers).
	Gossip []GossipMember `json:"gossip,omitempty"`
	// GossipError is why this node, alone, cannot join its configured
	// peers (wrong secret or cluster name, or no route).
	GossipError string `json:"gossip_error,omitempty"`
	// Refused reports that the cluster refuses this node (wrong secret or
	// cluster name, peers disagree on expect, another cluster's CA): what
	// it waits for needs an operator, not time.
	Refused bool `json:"refused,omitempty"`
	// Alert is the etcd membership reconciler's call for an operator
	// (set on the node next to the etcd leader).
	Alert     string      `json:"alert,omitempty"`
	Etcd      *EtcdStatus `json:"etcd,omitempty"`
	EtcdError string      `json:"etcd_error,omitempty"`
	// ControlPlane is the local API server's readiness (control-plane
	// nodes whose units are installed, when the daemon answers).
	ControlPlane *ControlPlaneStatus `json:"control_plane,omitempty"`
	// Kubelet is this node's kubelet side: container runtime, images,
	// the Node's readiness and the pod network (once its units are
	// installed, when the daemon answers).
	Kubelet *NodeStatus `json:"kubelet,omitempty"`
	// APIServers is every control-plane node's kube-apiserver /readyz,
	// as this node reaches it (one per etcd member).
	APIServers []APIServerHealth `json:"apiservers,omitempty"`
	// NetworkPolicy is this node's NetworkPolicy enforcement (when the
	// daemon answers and the node side runs).
	NetworkPolicy *NetworkPolicyStatus `json:"network_policy,omitempty"`
	// Seed is the cluster's last seeding pass.
	Seed *SeedStatus `json:"seed,omitempty"`
	// Platform is what runs of the seeded workloads (control-plane
	// nodes, when the daemon answers and the API is ready).
	Platform *PlatformStatus `json:"platform,omitempty"`
	// Certificates summarises the node's certificates: the one that
	// expires first, and how many are due or expired.
	Certificates *CertSummary `json:"certificates,omitempty"`
	// LastRenewal is the daemon's last certificate renewal pass.
	LastRenewal *RenewResult `json:"last_renewal,omitempty"`
	// EtcdSnapshots are this control-plane node's scheduled etcd
	// snapshots (when the daemon answers).
	EtcdSnapshots *SnapshotStatus `json:"etcd_snapshots,omitempty"`
	// VIP is the control plane's virtual IP (control-plane nodes with
	// control_plane_vip set, when the daemon answers).
	VIP *VIPStatus `json:"vip,omitempty"`
	// JoinSeconds is how long the running daemon took from its start to
	// the node's target phase (api-ready, standby or worker-waiting); 0
	// until it got there.
	JoinSeconds float64 `json:"join_seconds,omitempty"`
	// MembershipChanges counts the etcd membership changes this daemon
	// made since it started, by action (add-learner, promote, remove).
	MembershipChanges map[string]int `json:"etcd_membership_changes,omitempty"`
	CheckedAt         time.Time      `json:"checked_at"`
}

// APIServerHealth is one kube-apiserver's /readyz.
type APIServerHealth struct {
	Node  string `json:"node"`
	URL   string `json:"url"`
	Ready bool   `json:"ready"`
	Error string `json:"error,omitempty"`
}

// Node identifies the node.
type Node struct {
	Name             string `json:"name"`
	Role             string `json:"role"`
	ID               string `json:"id"`
	Cluster          string `json:"cluster"`
	AdvertiseAddress string `json:"advertise_address"`
	Version          string `json:"agent_version"`
}

// UnitReport is a managed unit's state, with its last journal lines when
// it is failing.
type UnitReport struct {
	units.UnitStatus
	Journal []string `json:"journal,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// CertSummary is the node's certificates at a glance; `ecom-agent certs
// check-expiration` lists them all.
type CertSummary struct {
	Count int `json:"count"`
	// Nearest is the certificate that expires first, and when.
	Nearest         string    `json:"nearest"`
	NearestNotAfter time.Time `json:"nearest_not_after"`
	// Due counts leaves inside the renewal window, Expired those past
	// their end, Unreadable those that could not be read.
	Due        int `json:"due"`
	Expired    int `json:"expired"`
	Unreadable int `json:"unreadable"`
	// CAExpiresSoon names CAs with less than a year left: CAs are not
	// rotated automatically.
	CAExpiresSoon []string `json:"ca_expires_soon,omitempty"`
	// Expiries lists every readable certificate's end of validity.
	Expiries []CertExpiry `json:"expiries,omitempty"`
}

// CertExpiry is when one certificate expires.
type CertExpiry struct {
	Name     string    `json:"name"`
	NotAfter time.Time `json:"not_after"`
}

// Judge sets the verdict and reasons from the rest of the status.
func (s *Status) Judge(expectEtcd bool) {
	var down, degraded []string
	for _, u := range s.Units {
		switch {
		case u.Error != "":
			down = append(down, fmt.Sprintf("%s: %s", u.Name, u.Error))
		case u.ActiveState == units.Failed || (u.ActiveState != units.Active && u.SubState == "auto-restart"):
			down = append(down, fmt.Sprintf("%s is %s (%s), restarted %d times", u.Name, u.ActiveState, u.Result, u.NRestarts))
		case u.ActiveState != units.Active:
			degraded = append(degraded, fmt.Sprintf("%s is %s/%s", u.Name, u.ActiveState, u.SubState))
		}
	}
	if expectEtcd {
		switch {
		case s.EtcdError != "":
			down = append(down, "etcd is not answering: "+s.EtcdError)
		case s.Etcd != nil:
			for _, m := range s.Etcd.Members {
				switch {
				case !m.Started:
					degraded = append(degraded, fmt.Sprintf("etcd member %s added but not started", m.ID))
				case !m.Healthy:
					degraded = append(degraded, fmt.Sprintf("etcd member %s (%s) does not answer: %s", m.Name, m.ID, m.Error))
				}
			}
			if s.Etcd.Leader == "" {
				down = append(down, "etcd has no leader")
			}
		}
	}
	if cp := s.ControlPlane; cp != nil {
		switch {
		case cp.Error != "":
			down = append(down, "control plane: "+cp.Error)
		case !cp.Ready:
			degraded = append(degraded, "kube-apiserver is not ready yet: "+cp.Readyz)
		}
	}
	if k := s.Kubelet; k != nil {
		for _, e := range k.ImageErrors {
			degraded = append(degraded, "image archive: "+e)
		}
		switch {
		case k.Error != "":
			degraded = append(degraded, "kubelet: "+k.Error)
		case !k.Ready:
			degraded = append(degraded, "this Node is not Ready: "+k.Reason)
		}
	}
	for _, a := range s.APIServers {
		// The local one is judged from ControlPlane when the daemon
		// answers, with its diagnosis.
		if !a.Ready && (a.Node != s.Node.Name || s.ControlPlane == nil) {
			degraded = append(degraded, fmt.Sprintf("kube-apiserver on %s (%s) is not ready: %s", a.Node, a.URL, a.Error))
		}
	}
	if np := s.NetworkPolicy; np != nil && !np.Off && np.Error != "" {
		degraded = append(degraded, "network policy is not enforced: "+np.Error)
	}
	if sd := s.Seed; sd != nil {
		if sd.Error != "" {
			degraded = append(degraded, "seeding: "+sd.Error)
		}
		if n := sd.Counts["failed"]; n > 0 {
			degraded = append(degraded, fmt.Sprintf("seeding: %d object(s) failed to apply (see seed.problems)", n))
		}
	}
	if p := s.Platform; p != nil && p.Overdue {
		first := ""
		if len(p.NotReady) > 0 {
			first = fmt.Sprintf(", the first %s: %s", p.NotReady[0].Object, p.NotReady[0].Reason)
		}
		degraded = append(degraded, fmt.Sprintf("platform: %d of %d seeded workload(s) not available since %s%s (see `ecom-agent verify`)",
			p.Workloads-p.Ready, p.Workloads, p.NotReadySince.UTC().Format(time.RFC3339), first))
	}
	if c := s.Certificates; c != nil {
		if c.Expired > 0 {
			down = append(down, fmt.Sprintf("%d certificate(s) expired (see `ecom-agent certs check-expiration`)", c.Expired))
		}
		if c.Due > 0 {
			degraded = append(degraded, fmt.Sprintf("%d certificate(s) inside the renewal window, the first %s on %s: restart ecom-agent to re-issue them", c.Due, c.Nearest, c.NearestNotAfter.UTC().Format(time.DateOnly)))
		}
		if c.Unreadable > 0 {
			degraded = append(degraded, fmt.Sprintf("%d certificate(s) unreadable (see `ecom-agent certs check-expiration`)", c.Unreadable))
		}
		for _, ca := range c.CAExpiresSoon {
			degraded = append(degraded, "CA "+ca+" expires within a year and is not rotated automatically")
		}
	}
	if sn := s.EtcdSnapshots; sn != nil && sn.Overdue {
		msg := fmt.Sprintf("etcd snapshots: none in %s younger than twice the interval (%s)", sn.Dir, 2*sn.Interval())
		if sn.Last != nil {
			msg = fmt.Sprintf("etcd snapshots: the last one (%s) is from %s, older than twice the interval (%s)", sn.Last.Name, sn.Last.Taken.UTC().Format(time.RFC3339), 2*sn.Interval())
		}
		if sn.Error != "" {
			msg += "; the last attempt failed: " + sn.Error
		}
		degraded = append(degraded, msg)
	}
	if v := s.VIP; v != nil && v.problem() != "" {
		degraded = append(degraded, v.problem())
	}
	if s.Waiting != "" && s.Phase != nodestate.PhaseStandby {
		degraded = append(degraded, "waiting: "+s.Waiting)
	}
	if s.GossipError != "" {
		down = append(down, "gossip: cannot join the cluster: "+s.GossipError)
	}
	if s.Alert != "" {
		degraded = append(degraded, "etcd membership: "+s.Alert)
	}
	for _, g := range s.Gossip {
		if g.State == "dead" || g.State == "suspect" {
			degraded = append(degraded, fmt.Sprintf("gossip: %s (%s, %s) is %s since %s", g.Name, g.Address, g.Role, g.State, g.Since.UTC().Format(time.RFC3339)))
		}
	}
	s.Reasons = append(down, degraded...)
	switch {
	case len(down) > 0:
		s.Verdict = Down
	case len(degraded) > 0:
		s.Verdict = Degraded
	default:
		s.Verdict = Healthy
	}
}
