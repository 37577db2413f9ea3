// Package vip is the daemon's control-plane virtual IP on a control-plane
// node (control_plane_vip): the node stands for it in an etcd election
// while its API server is ready, and the winner puts the address on its
// interface and announces it by gratuitous ARP, as kube-vip's ARP mode
// does with a Kubernetes Lease. The election is etcd's: the agents
// already share it, it answers before the API does, and its lease ends a
// dead holder's term after leaseTTL.
//
// Failover: a holder that stops cleanly takes the address off and
// resigns, and the next candidate takes it at once; one that dies or is
// cut off loses it when its lease expires (leaseTTL), and drops the
// address itself when its own session ends: the etcd client's view of
// the lease ends up to about a second after etcd's, the moment two nodes
// may both have the address. A node that restarts after a crash takes a
// leftover address off before anything else.
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
	// notReadyFor is how long the node's API server may fail /readyz
	// before the node lets go of the VIP: one failed probe is not worth
	// a move.
	notReadyFor = 5 * time.Second
	// opTimeout bounds one etcd call.
	opTimeout = 2 * time.Second
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

	// step serializes Step and Stop; it is held across host and etcd
	// calls, which mu (the status only) never is.
	step         sync.Mutex
	cli          *clientv3.Client // reads the holder
	iface        string
	camp         *campaign
	served       bool // the API server was ready once
	unreadySince time.Time
	announced    int

	mu sync.Mutex
	st *status.VIPStatus // nil until the API server was ready once
}

var (
	_ component.Component = (*VIP)(nil)
	_ component.Reporter  = (*VIP)(nil)
	_ component.Waker     = (*VIP)(nil)
)

// New returns the component.
func New(d Deps) *VIP {
	if d.Now == nil {
		d.Now = time.Now
	}
	return &VIP{d: d, addr: d.Config.ControlPlaneVIP.Address, wake: make(chan struct{}, 1)}
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

// Report fills in the VIP's status, once the API server was ready.
func (v *VIP) Report(s *status.Status) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.st != nil {
		st := *v.st
		s.VIP = &st
	}
}

func (v *VIP) publish(st status.VIPStatus) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st = &st
}

// Step takes a leftover address off, stands for the VIP while the API
// server is ready, carries out the election's answer on the host and
// reads who holds it.
func (v *VIP) Step(ctx context.Context) error {
	v.step.Lock()
	defer v.step.Unlock()
	st := status.VIPStatus{Address: v.addr.String()}
	now := v.d.Now()
	if v.d.APIReady() {
		v.served, v.unreadySince = true, time.Time{}
	} else if v.unreadySince.IsZero() {
		v.unreadySince = now
	}
	if err := v.resolve(); err != nil {
		st.Error = err.Error()
		if v.served {
			v.publish(st)
		}
		return nil
	}
	st.Interface = v.iface
	candidate := v.served && (v.unreadySince.IsZero() || now.Sub(v.unreadySince) < notReadyFor)
	if v.camp != nil && v.camp.over() {
		switch err := v.camp.failure(); {
		case err != nil:
			v.d.Log.Warn("the VIP's election ended; standing again", "err", err)
		case v.camp.won():
			v.d.Log.Warn("lost the VIP: this node's etcd lease ended", "address", v.addr)
		default:
			v.d.Log.Info("this node's etcd lease for the VIP's election ended while it waited; standing again")
		}
		v.letGo(ctx, &st)
	}
	switch {
	case v.camp == nil && candidate:
		v.camp = stand(v.d.Client, v.d.Config.NodeName, v.wakeup)
	case v.camp != nil && !candidate:
		v.d.Log.Warn("this node's API server is not ready: letting go of the VIP", "address", v.addr)
		v.letGo(ctx, &st)
	}
	st.Candidate = candidate
	v.apply(ctx, v.camp != nil && v.camp.holding(), &st)
	if v.served {
		v.readHolder(ctx, &st)
		v.publish(st)
	}
	return nil
}

// resolve finds the interface once (v.step held).
func (v *VIP) resolve() error {
	if v.iface != "" {
		return nil
	}
	iface := v.d.Config.ControlPlaneVIP.Interface
	if iface == "" {
		var err error
		if iface, err = v.d.Host.InterfaceOf(v.d.Config.AdvertiseAddress); err != nil {
			return err
		}
	}
	v.iface = iface
	return nil
}

// letGo takes the address off first, then ends the candidacy: the next
// holder must not find it still here (v.step held).
func (v *VIP) letGo(ctx context.Context, st *status.VIPStatus) {
	v.apply(ctx, false, st)
	v.camp.close(ctx)
	v.camp = nil
}

// apply puts the address on the interface when this node is the holder
// (announcing it on the first steps) and takes it off when not.
func (v *VIP) apply(ctx context.Context, holder bool, st *status.VIPStatus) {
	has, err := v.d.Host.Has(v.iface, v.addr)
	if err != nil {
		st.Error = err.Error()
		return
	}
	switch {
	case holder && !has:
		if err := v.d.Host.Add(ctx, v.iface, v.addr); err != nil {
			st.Error = err.Error()
			return
		}
		v.announced = 0
		v.d.Log.Info("took the VIP", "address", v.addr, "interface", v.iface)
	case !holder && has:
		if err := v.d.Host.Remove(ctx, v.iface, v.addr); err != nil {
			st.Error = err.Error()
			return
		}
		v.d.Log.Info("released the VIP", "address", v.addr, "interface", v.iface)
	}
	if !holder {
		return
	}
	st.Held = true
	if prev := v.previous(); prev.Held {
		st.Since = prev.Since
	} else {
		st.Since = v.d.Now()
	}
	if v.announced < announcements {
		if err := v.d.Host.Announce(v.iface, v.addr); err != nil {
			st.Error = err.Error()
			return
		}
		v.announced++
	}
}

// previous is the last status published.
func (v *VIP) previous() status.VIPStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.st == nil {
		return status.VIPStatus{}
	}
	return *v.st
}

// readHolder reads the election's leader: the oldest candidate's key.
func (v *VIP) readHolder(ctx context.Context, st *status.VIPStatus) {
	if v.cli == nil {
		cli, err := v.d.Client()
		if err != nil {
			st.Error = fmt.Sprintf("etcd client for the VIP's election: %v", err)
			return
		}
		v.cli = cli
	}
	rctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := v.cli.Get(rctx, ElectionKey+"/", clientv3.WithFirstCreate()...)
	switch {
	case err != nil:
		if st.Error == "" {
			st.Error = fmt.Sprintf("read the VIP's holder from etcd: %v", err)
		}
	case len(resp.Kvs) > 0:
		st.Holder = string(resp.Kvs[0].Value)
	}
}

// Stop takes the address off, resigns (the next candidate takes the VIP
// at once) and closes the clients.
func (v *VIP) Stop(ctx context.Context) error {
	v.step.Lock()
	defer v.step.Unlock()
	var err error
	if rerr := v.resolve(); rerr == nil {
		if has, _ := v.d.Host.Has(v.iface, v.addr); has {
			if err = v.d.Host.Remove(ctx, v.iface, v.addr); err == nil {
				v.d.Log.Info("released the VIP", "address", v.addr, "interface", v.iface)
			}
		}
	}
	if v.camp != nil {
		v.camp.close(ctx)
		v.camp = nil
	}
	if v.cli != nil {
		v.cli.Close()
		v.cli = nil
	}
	v.mu.Lock()
	if v.st != nil {
		v.st.Held, v.st.Since, v.st.Candidate = false, time.Time{}, false
	}
	v.mu.Unlock()
	return err
}
