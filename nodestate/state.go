// Package nodestate is what the agent keeps about its node across
// restarts (/var/lib/ecom-agent/state.json): the node ID, the phase, the
// decided etcd membership and the formation protocol's promises. Every
// decision that must survive a crash is written here before it is acted
// on. Store is the daemon's one copy, shared by its components.
package nodestate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/google/uuid"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/quorum"
)

// State is what the agent keeps about itself across restarts, at
// /var/lib/ecom-agent/state.json. Every decision that must survive a crash
// is written here before it is acted on, so a killed agent resumes.
type State struct {
	// NodeID identifies this installation; a reinstalled host gets a new
	// one, which is how peers tell it from the member it replaces.
	NodeID string `json:"node_id"`
	// Phase is the last phase this node reached.
	Phase Phase `json:"phase"`
	// PhaseSince is when Phase was entered.
	PhaseSince time.Time `json:"phase_since"`
	// Etcd is the etcd membership this node starts with, once decided.
	Etcd *EtcdDecision `json:"etcd,omitempty"`
	// Quorum is the formation protocol's state: the promises this node
	// gave and the commit it holds. It is written before the node answers
	// a peer or acts.
	Quorum quorum.State `json:"quorum,omitzero"`
	// ControlPlaneUnits is true once the control-plane units are
	// installed, so a status without the daemon knows to check them.
	ControlPlaneUnits bool `json:"control_plane_units,omitempty"`
	// NodeUnits is true once the kubelet's units (containerd, kubelet)
	// are installed: status and reset then look after them too.
	NodeUnits bool `json:"node_units,omitempty"`
}

// EtcdDecision is a decided etcd membership.
type EtcdDecision struct {
	State     bootstrap.EtcdStart `json:"state"`
	Token     string              `json:"token"`
	Peers     map[string]string   `json:"peers"` // member name -> peer URL
	DecidedAt time.Time           `json:"decided_at"`
	// Served is when the member first served with this decision: from
	// then on its data must be there, and a member without it is a
	// node that lost its data, not a new one.
	Served time.Time `json:"served,omitzero"`
}

// Membership returns the decision as the renderer wants it.
func (d *EtcdDecision) Membership() bootstrap.EtcdMembership {
	if d == nil {
		return bootstrap.EtcdMembership{}
	}
	return bootstrap.EtcdMembership{State: d.State, Token: d.Token, Peers: d.Peers}
}

// Phase is a step of a node's life, in order.
type Phase string

// The phases a node moves through.
const (
	PhaseStarting Phase = "starting"
	PhaseRendered Phase = "rendered"
	PhaseWaiting  Phase = "waiting-for-peers"
	// PhaseStandby: a control-plane node outside etcd because the cluster
	// has its members; it is added when one is missing.
	PhaseStandby   Phase = "standby"
	PhaseEtcdStart Phase = "etcd-starting"
	PhaseEtcdReady Phase = "etcd-ready"
	// PhaseAPIReady: etcd serves and so does the local kube-apiserver.
	PhaseAPIReady Phase = "api-ready"
	// PhaseWorkerWaiting: a worker rendered what needs no CA key and
	// waits for, or runs with, the credentials a control-plane agent
	// signs for it.
	PhaseWorkerWaiting Phase = "worker-waiting"
)

// Target reports whether p is a node's target phase: where a join is
// done (api-ready, standby, worker-waiting).
func (p Phase) Target() bool {
	return p == PhaseAPIReady || p == PhaseStandby || p == PhaseWorkerWaiting
}

// EtcdServing reports whether a node in phase p runs a serving etcd
// member.
func (p Phase) EtcdServing() bool { return p == PhaseEtcdReady || p == PhaseAPIReady }

// LoadState reads the state file, creating a fresh state with a new node
// ID when there is none. A state file that exists but does not parse is
// an error: guessing would risk a second bootstrap.
func LoadState(root *hostfs.Root) (*State, error) {
	data, err := root.ReadFile(bootstrap.AgentStateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{NodeID: uuid.NewString(), Phase: PhaseStarting}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%w); move it aside only if this node holds no etcd data, then restart", root.Path(bootstrap.AgentStateFile), err)
	}
	if _, err := uuid.Parse(s.NodeID); err != nil {
		return nil, fmt.Errorf("%s: node_id %q is not a UUID", root.Path(bootstrap.AgentStateFile), s.NodeID)
	}
	return &s, nil
}

// ReadState reads the state file if there is one (nil if not), without
// creating a node ID.
func ReadState(root *hostfs.Root) (*State, error) {
	if ok, err := root.Exists(bootstrap.AgentStateFile); err != nil || !ok {
		return nil, err
	}
	return LoadState(root)
}

// Save writes the state atomically, readable by root only.
func (s *State) Save(root *hostfs.Root) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := root.MkdirAll(bootstrap.AgentStateDir, 0o700); err != nil {
		return err
	}
	if _, err := root.WriteFile(bootstrap.AgentStateFile, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// SetPhase records a new phase (and when it was entered) if it changed.
func (s *State) SetPhase(p Phase, now time.Time) {
	if s.Phase != p {
		s.Phase, s.PhaseSince = p, now
	}
}

// HasEtcdData reports whether this node has an etcd write-ahead log.
func HasEtcdData(root *hostfs.Root) (bool, error) {
	_, err := root.Stat(bootstrap.EtcdDataDir + "/member/wal")
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
