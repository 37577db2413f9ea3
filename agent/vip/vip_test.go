package vip

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/internal/etcdtest"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/vip"
)

var testVIP = netip.MustParseAddr("10.0.0.100")

// host is a node's interfaces as the component leaves them.
type host struct {
	mu        sync.Mutex
	addrs     map[string]map[netip.Addr]bool
	announced int
}

var _ vip.Host = (*host)(nil)

func newHost(advertise netip.Addr) *host {
	return &host{addrs: map[string]map[netip.Addr]bool{"eth0": {advertise: true}}}
}

func (h *host) InterfaceOf(a netip.Addr) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, as := range h.addrs {
		if as[a] {
			return name, nil
		}
	}
	return "", errors.New("no interface holds " + a.String())
}

func (h *host) Has(iface string, a netip.Addr) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.addrs[iface][a], nil
}

func (h *host) Add(_ context.Context, iface string, a netip.Addr) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addrs[iface][a] = true
	return nil
}

func (h *host) Remove(_ context.Context, iface string, a netip.Addr) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.addrs[iface], a)
	return nil
}

func (h *host) Announce(iface string, a netip.Addr) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.addrs[iface][a] {
		return errors.New("announced an address the interface does not hold")
	}
	h.announced++
	return nil
}

func (h *host) holds() bool { ok, _ := h.Has("eth0", testVIP); return ok }

// clock is the tests' time, moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var testClock = &clock{t: time.Date(2026, 12, 6, 21, 0, 0, 0, time.UTC)}

// node is one control-plane node's component with its host.
type node struct {
	name  string
	host  *host
	ready atomic.Bool
	mu    sync.Mutex
	clis  []*clientv3.Client // the clients its component made
	v     *VIP
}

// kill closes the component's clients without a word, as a dead agent.
func (n *node) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.clis {
		c.Close()
	}
}

func newNode(t *testing.T, endpoints []string, name, addr string) *node {
	n := &node{name: name, host: newHost(netip.MustParseAddr(addr))}
	n.ready.Store(true)
	n.start(t, endpoints, addr)
	return n
}

// start gives the node a new component, as a restarted agent.
func (n *node) start(t *testing.T, endpoints []string, addr string) {
	cfg := &config.Config{NodeName: n.name, AdvertiseAddress: netip.MustParseAddr(addr), ControlPlaneVIP: config.VIP{Address: testVIP}}
	n.v = New(Deps{
		Config: cfg, Log: slog.New(slog.DiscardHandler), Host: n.host, APIReady: n.ready.Load, Now: testClock.now,
		Client: func() (*clientv3.Client, error) {
			cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err == nil {
				n.mu.Lock()
				n.clis = append(n.clis, cli)
				n.mu.Unlock()
			}
			return cli, err
		},
	})
	v := n.v
	t.Cleanup(func() { _ = v.Stop(context.Background()) })
}

func (n *node) status() status.VIPStatus {
	var s status.Status
	n.v.Report(&s)
	return *s.VIP
}

// settle steps every node until exactly one holds the VIP and every
// node names it as the holder; it returns that node. Bounded: 30 s.
func settle(t *testing.T, nodes []*node) *node {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var holders []*node
		for _, n := range nodes {
			if err := n.v.Step(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n.host.holds() {
				holders = append(holders, n)
			}
		}
		if len(holders) == 1 {
			agreed := true
			for _, n := range nodes {
				agreed = agreed && n.status().Holder == holders[0].name
			}
			if agreed {
				return holders[0]
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range nodes {
		t.Logf("%s: holds %v, status %+v", n.name, n.host.holds(), n.status())
	}
	t.Fatal("no single holder within 30s")
	return nil
}

func without(nodes []*node, x *node) []*node {
	var out []*node
	for _, n := range nodes {
		if n != x {
			out = append(out, n)
		}
	}
	return out
}

// Three candidates on one real etcd: exactly one holds the VIP and
// announces it; it moves when the holder stops (resigning), when its API
// server stays unready, and when it dies without a word (its lease
// expires); a node that lost it takes it off its interface.
func TestOneHolderAndFailover(t *testing.T) {
	endpoints := etcdtest.Start(t).Endpoints()
	nodes := []*node{newNode(t, endpoints, "cp1", "10.0.0.11"), newNode(t, endpoints, "cp2", "10.0.0.12"), newNode(t, endpoints, "cp3", "10.0.0.13")}

	first := settle(t, nodes)
	st := first.status()
	if !st.Held || !st.Candidate || st.Interface != "eth0" || st.Since.IsZero() || st.Error != "" {
		t.Errorf("holder's status %+v", st)
	}
	if first.host.announced == 0 {
		t.Error("the holder sent no gratuitous ARP")
	}
	for _, n := range without(nodes, first) {
		if st := n.status(); st.Held || st.Holder != first.name {
			t.Errorf("%s: status %+v", n.name, st)
		}
	}

	t.Run("a stopped holder resigns", func(t *testing.T) {
		if err := first.v.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if first.host.holds() {
			t.Fatal("the stopped holder kept the address")
		}
		rest := without(nodes, first)
		second := settle(t, rest)
		// The stopped node stands again when stepped.
		nodes = append(rest, first)
		if got := settle(t, nodes); got != second {
			t.Errorf("the VIP moved back to %s", got.name)
		}
	})

	t.Run("a holder whose API server is not ready lets go", func(t *testing.T) {
		holder := settle(t, nodes)
		holder.ready.Store(false)
		// One failed probe, or several in a moment, moves nothing.
		for range 3 {
			_ = holder.v.Step(context.Background())
		}
		if !holder.host.holds() {
			t.Fatal("the holder let go at its API server's first failed probe")
		}
		testClock.add(notReadyFor)
		_ = holder.v.Step(context.Background())
		if holder.host.holds() || holder.status().Candidate {
			t.Fatalf("unready holder: holds %v, status %+v", holder.host.holds(), holder.status())
		}
		next := settle(t, nodes)
		if next == holder {
			t.Fatal("the unready node holds the VIP again")
		}
		holder.ready.Store(true)
	})

	t.Run("a dead holder's lease expires", func(t *testing.T) {
		holder := settle(t, nodes)
		// Dead: its client goes away without resigning, and it is no
		// longer stepped. The others wait for the lease to expire.
		holder.kill()
		next := settle(t, without(nodes, holder))
		if next == holder {
			t.Fatal("dead holder still elected")
		}
		// Restarted, its agent finds the address it still had and
		// drops it: another node holds the VIP.
		if !holder.host.holds() {
			t.Fatal("the dead holder's address was removed by someone else")
		}
		holder.start(t, endpoints, "10.0.0.1"+holder.name[2:])
		if got := settle(t, nodes); got != next {
			t.Errorf("the VIP moved to %s", got.name)
		}
		if holder.host.holds() {
			t.Error("the old holder kept the address")
		}
	})
}

// A node without the advertised address on any interface says so and
// holds nothing.
func TestNoInterface(t *testing.T) {
	endpoints := etcdtest.Start(t).Endpoints()
	n := newNode(t, endpoints, "cp1", "10.0.0.11")
	n.host.addrs = map[string]map[netip.Addr]bool{"eth0": {}}
	if err := n.v.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := n.status(); st.Error == "" || st.Held {
		t.Errorf("status %+v", st)
	}
}

// An agent that starts on a host with the VIP left on its interface (it
// crashed holding it) takes it off at its first step, before its API
// server is ready; Stop does the same before any step.
func TestLeftoverAddressRemoved(t *testing.T) {
	endpoints := etcdtest.Start(t).Endpoints()
	n := newNode(t, endpoints, "cp1", "10.0.0.11")
	n.ready.Store(false)
	n.host.addrs["eth0"][testVIP] = true
	if err := n.v.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n.host.holds() {
		t.Error("the leftover address stayed")
	}
	var s status.Status
	if n.v.Report(&s); s.VIP != nil {
		t.Errorf("a VIP status before the API server was ready: %+v", s.VIP)
	}

	n.host.addrs["eth0"][testVIP] = true
	n.start(t, endpoints, "10.0.0.11")
	if err := n.v.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n.host.holds() {
		t.Error("Stop left the address")
	}
}
