// Package vip is the daemon's control-plane virtual IP on a control-plane
// node (control_plane_vip): the node stands for it in an etcd election
// while its API server is ready, and the winner puts the address on its
// interface and announces it by gratuitous ARP, as kube-vip's ARP mode
// does with a Kubernetes Lease. The election is etcd's: the agents
// already share it, it answers before the API does, and its lease ends a
// dead holder's term after leaseTTL.
//
// Failover: a holder that stops cleanly resigns, and the next candidate
// takes the address at once; one that dies or is cut off loses it when
// its lease expires (leaseTTL), and drops the address itself when its
// own session ends, so two nodes hold it at most for the moments etcd's
// lease and the old holder's clock disagree.
package vip

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/vip"
)

// Name is the component's name.
const Name = "vip"

// ElectionKey is the etcd prefix of the VIP's election.
const ElectionKey = "/ecom-agent/elections/vip"

const (
	// leaseTTL is the candidates' etcd lease, in seconds: how long a
	// dead holder keeps the VIP (kube-vip's lease is 5 s too).
	leaseTTL = 5
	// announcements is how many gratuitous ARPs a new holder sends, one
	// per step: a switch or neighbour that missed the first gets the
	// next.
	announcements = 3
	// notReadySteps is how many steps in a row the node's API server may
	// fail /readyz before the node lets go of the VIP: one failed probe
	// is not worth a move.
	notReadySteps = 3
	// opTimeout bounds one etcd read.
	opTimeout = 3 * time.Second
)

// Deps is what the component is built from.
type Deps struct {
	Config *config.Config
	Log    *slog.Logger
	Now    func() time.Time
	// Host changes the host's addresses (vip.System on a node).
	Host vip.Host
	// APIReady reports whether this node's API server answered its last
	// /readyz (the control-plane component's probe).
	APIReady func() bool
	// Client makes a client of the local etcd member.
	Client func() (*clientv3.Client, error)
}

// VIP is the component.
type VIP struct {
	d    Deps
	addr netip.Addr
	wake chan struct{}

	mu        sync.Mutex
	cli       *clientv3.Client
	iface     string
	camp      *campaign
	notReady  int
	announced int
	st        status.VIPStatus
}

var (
	_ component.Component  = (*VIP)(nil)
	_ component.Reporter   = (*VIP)(nil)
	_ component.Waker      = (*VIP)(nil)
	_ component.Withdrawer = (*VIP)(nil)
)

// New returns the component.
func New(d Deps) *VIP {
	if d.Now == nil {
		d.Now = time.Now
	}
	a := d.Config.ControlPlaneVIP.Address
	return &VIP{d: d, addr: a, wake: make(chan struct{}, 1), st: status.VIPStatus{Address: a.String()}}
}

// Name names the component.
func (v *VIP) Name() string { return Name }

// Ready is always true: nothing on the node waits for the VIP.
func (v *VIP) Ready() bool { return true }

// Wakeups are the election's changes: won, or the session lost.
func (v *VIP) Wakeups() <-chan struct{} { return v.wake }

func (v *VIP) wakeup() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// Report fills in the VIP's status.
func (v *VIP) Report(s *status.Status) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.st
	s.VIP = &st
}

// Step stands for the VIP while the API server is ready, carries out
// the election's answer on the host and reads who holds it.
func (v *VIP) Step(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st.Error = ""
	if v.iface == "" {
		iface := v.d.Config.ControlPlaneVIP.Interface
		if iface == "" {
			var err error
			if iface, err = v.d.Host.InterfaceOf(v.d.Config.AdvertiseAddress); err != nil {
				v.st.Error = err.Error()
				return nil
			}
		}
		v.iface, v.st.Interface = iface, iface
	}
	if v.d.APIReady() {
		v.notReady = 0
	} else {
		v.notReady++
	}
	candidate := v.notReady < notReadySteps
	v.st.Candidate = candidate
	if v.camp != nil && v.camp.over() {
		if err := v.camp.failure(); err != nil {
			v.d.Log.Warn("the VIP's election ended; standing again", "err", err)
		} else if v.camp.won() {
			v.d.Log.Warn("lost the VIP: this node's etcd lease ended", "address", v.addr)
		}
		v.camp.close(ctx)
		v.camp = nil
	}
	switch {
	case v.camp == nil && candidate:
		if err := v.client(); err != nil {
			v.st.Error = err.Error()
			return nil
		}
		v.camp = stand(v.cli, v.d.Config.NodeName, v.wakeup)
	case v.camp != nil && !candidate:
		v.d.Log.Warn("this node's API server is not ready: letting go of the VIP", "address", v.addr)
		v.camp.close(ctx)
		v.camp = nil
	}
	v.apply(ctx, v.camp != nil && v.camp.won() && !v.camp.over())
	v.readHolder(ctx)
	return nil
}

// apply puts the address on the interface when this node is the holder
// (announcing it on the first steps) and takes it off when not.
func (v *VIP) apply(ctx context.Context, holder bool) {
	has, err := v.d.Host.Has(v.iface, v.addr)
	if err != nil {
		v.st.Error = err.Error()
		return
	}
	switch {
	case holder && !has:
		if err := v.d.Host.Add(ctx, v.iface, v.addr); err != nil {
			v.st.Error = err.Error()
			return
		}
		v.announced = 0
		v.st.Held, v.st.Since = true, v.d.Now()
		v.d.Log.Info("took the VIP", "address", v.addr, "interface", v.iface)
	case holder:
		v.st.Held = true
	case has:
		if err := v.d.Host.Remove(ctx, v.iface, v.addr); err != nil {
			v.st.Error = err.Error()
			return
		}
		v.d.Log.Info("released the VIP", "address", v.addr, "interface", v.iface)
		fallthrough
	default:
		v.st.Held, v.st.Since = false, time.Time{}
		return
	}
	if v.announced < announcements {
		if err := v.d.Host.Announce(v.iface, v.addr); err != nil {
			v.st.Error = err.Error()
			return
		}
		v.announced++
	}
}

// readHolder reads the election's leader: the oldest candidate's key.
func (v *VIP) readHolder(ctx context.Context) {
	if err := v.client(); err != nil {
		v.st.Holder = ""
		v.st.Error = err.Error()
		return
	}
	rctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := v.cli.Get(rctx, ElectionKey+"/", clientv3.WithFirstCreate()...)
	switch {
	case err != nil:
		v.st.Holder = ""
		if v.st.Error == "" {
			v.st.Error = fmt.Sprintf("read the VIP's holder from etcd: %v", err)
		}
	case len(resp.Kvs) == 0:
		v.st.Holder = ""
	default:
		v.st.Holder = string(resp.Kvs[0].Value)
	}
}

// client makes the etcd client once (v.mu held).
func (v *VIP) client() error {
	if v.cli != nil {
		return nil
	}
	cli, err := v.d.Client()
	if err != nil {
		return fmt.Errorf("etcd client for the VIP's election: %w", err)
	}
	v.cli = cli
	return nil
}

// Withdraw lets go of the VIP: the node's etcd data was set aside.
func (v *VIP) Withdraw(ctx context.Context) { _ = v.Stop(ctx) }

// Stop resigns (the next candidate takes the VIP at once), takes the
// address off the interface and closes the client.
func (v *VIP) Stop(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.camp != nil {
		v.camp.close(ctx)
		v.camp = nil
	}
	var err error
	if v.iface != "" {
		if err = v.d.Host.Remove(ctx, v.iface, v.addr); err == nil && v.st.Held {
			v.d.Log.Info("released the VIP", "address", v.addr, "interface", v.iface)
		}
	}
	v.st.Held, v.st.Since, v.st.Candidate = false, time.Time{}, false
	if v.cli != nil {
		v.cli.Close()
		v.cli = nil
	}
	return err
}
