// Package collect builds a node's status document: from the daemon's
// components and, for what they do not know, from the state file,
// systemd and etcd directly (which is also all `ecom-agent status` has
// when the daemon does not answer).
package collect

import (
	"context"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/buildinfo"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/kubeclient"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

// Systemd is what collecting asks of systemd; *units.Manager is one.
type Systemd interface {
	Status(ctx context.Context, name string) (units.UnitStatus, error)
	Journal(ctx context.Context, name string, n int) ([]string, error)
}

// JournalLines is how many journal lines a failing unit's report carries.
const JournalLines = 15

// Input is what a status is built from.
type Input struct {
	Config *config.Config
	Root   *hostfs.Root
	State  *nodestate.State
	// Systemd, if set, is asked for the units' states, and etcd and the
	// API servers are probed; nil builds the status from State alone.
	Systemd Systemd
	Started time.Time
	Now     time.Time
	Source  string
	// Parts fill in what the daemon's components know: each writes its
	// own fields and conditions.
	Parts []func(*status.Status)
}

// Probed is what Probe read from systemd, the certificates, etcd and the
// API servers: the slow part of a status, which the daemon refreshes on
// its own pace while Build runs on every request.
type Probed struct {
	Units        []status.UnitReport
	Certificates *status.CertSummary
	Etcd         *status.EtcdStatus
	EtcdError    string
	APIServers   []status.APIServerHealth
	// EtcdExpected is true when the node runs an etcd member that should
	// serve: its silence is then a fault.
	EtcdExpected bool
}

// Probe reads the units' states, the certificates, etcd and the API
// servers, as far as the node's state says they should be there.
func Probe(ctx context.Context, in Input) Probed {
	var p Probed
	cfg := in.Config
	managed := in.State.ManagedUnits(cfg)
	if in.Systemd != nil {
		p.Units = unitReports(ctx, in.Systemd, managed)
	}
	if in.State != nil && in.State.Etcd != nil {
		p.Certificates = CertSummary(in.Root, cfg, in.Now)
	}
	p.EtcdExpected = in.Systemd != nil && len(managed) > 0 && in.State.Phase.EtcdServing()
	if p.EtcdExpected {
		p.Etcd, p.EtcdError = probeEtcd(ctx, in.Root, cfg)
		if p.Etcd != nil && in.State.ControlPlaneUnits {
			p.APIServers = kubeclient.ProbeAPIServers(ctx, in.Root, cfg, p.Etcd.Members)
		}
	}
	return p
}

// Build assembles the status from the input's parts and what was
// probed, and judges it.
func Build(in Input, p Probed) status.Status {
	cfg := in.Config
	s := status.Status{
		SchemaVersion: status.StatusSchemaVersion,
		Source:        in.Source,
		Node: status.Node{
			Name: cfg.NodeName, Role: string(cfg.Role), Cluster: cfg.ClusterName,
			AdvertiseAddress: cfg.AdvertiseAddress.String(), Version: buildinfo.Version,
		},
		StartedAt:    in.Started,
		Units:        append([]status.UnitReport{}, p.Units...),
		Certificates: p.Certificates,
		Etcd:         p.Etcd,
		EtcdError:    p.EtcdError,
		APIServers:   p.APIServers,
		CheckedAt:    in.Now,
	}
	for _, part := range in.Parts {
		part(&s)
	}
	for _, c := range s.Conditions {
		if s.Waiting == "" {
			s.Waiting = c.Message
		}
		s.Refused = s.Refused || c.Refused
	}
	if in.State != nil {
		s.Node.ID, s.Phase, s.PhaseSince = in.State.NodeID, in.State.Phase, in.State.PhaseSince
	}
	s.Judge(p.EtcdExpected)
	return s
}

// Collect probes and builds the status.
func Collect(ctx context.Context, in Input) status.Status {
	return Build(in, Probe(ctx, in))
}

// Local builds the node's status without the daemon: from the state
// file, systemd and etcd directly. It is what `ecom-agent status` shows
// when the daemon does not answer.
func Local(ctx context.Context, cfg *config.Config, root *hostfs.Root, sd Systemd) status.Status {
	st, err := nodestate.ReadState(root)
	s := Collect(ctx, Input{Config: cfg, Root: root, State: st, Systemd: sd, Now: time.Now(), Source: "local"})
	switch {
	case err != nil:
		s.Reasons = append([]string{err.Error()}, s.Reasons...)
		s.Verdict = status.Down
	case st == nil:
		s.Reasons = append([]string{"this node has not joined: there is no " + bootstrap.AgentStateFile}, s.Reasons...)
		s.Verdict = status.Down
	}
	return s
}

// unitReports reads each unit's state, with journal lines for failing ones.
func unitReports(ctx context.Context, sd Systemd, names []string) []status.UnitReport {
	var out []status.UnitReport
	for _, n := range names {
		st, err := sd.Status(ctx, n)
		r := status.UnitReport{UnitStatus: st}
		r.Name = n
		if err != nil {
			r.Error = err.Error()
		} else if st.ActiveState != units.Active || st.NRestarts > 0 {
			r.Journal, _ = sd.Journal(ctx, n, JournalLines)
		}
		out = append(out, r)
	}
	return out
}

func probeEtcd(ctx context.Context, root *hostfs.Root, cfg *config.Config) (*status.EtcdStatus, string) {
	cli, err := etcdclient.Local(root, cfg)
	if err != nil {
		return nil, err.Error()
	}
	defer cli.Close()
	st, err := etcdclient.Status(ctx, cli)
	if err != nil {
		return nil, err.Error()
	}
	return &st, ""
}

// caWarning is how long before a CA's expiry the status warns.
const caWarning = 365 * 24 * time.Hour

// CertSummary reads the node's certificates (nil when it has none yet).
func CertSummary(root *hostfs.Root, cfg *config.Config, now time.Time) *status.CertSummary {
	opts := bootstrap.PKIOptions(cfg)
	opts.Now = func() time.Time { return now }
	list, err := bootstrap.CertInventory(root, opts)
	if err != nil || len(list) == 0 {
		return nil
	}
	c := &status.CertSummary{Count: len(list)}
	for _, st := range list {
		if st.Error == "" {
			c.Expiries = append(c.Expiries, status.CertExpiry{Name: st.Name, NotAfter: st.NotAfter})
		}
		switch {
		case st.Error != "":
			c.Unreadable++
			continue
		case st.Expired:
			c.Expired++
		case st.WillRenew:
			c.Due++
		case st.CA && st.Residual < caWarning:
			c.CAExpiresSoon = append(c.CAExpiresSoon, st.Name)
		}
		if c.Nearest == "" || st.NotAfter.Before(c.NearestNotAfter) {
			c.Nearest, c.NearestNotAfter = st.Name, st.NotAfter
		}
	}
	return c
}
