package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/memberlist"

	"github.com/ecom-platform/ecom-agent/config"
)

// waitTimeout bounds every wait for the cluster to reach a state. Fast
// timings reach them in well under a second; the margin is for loaded
// machines and the race detector.
const waitTimeout = 20 * time.Second

var (
	loopback                 = netip.MustParseAddr("127.0.0.1")
	testSecret config.Secret = "0123456789abcdef0123456789abcdef"
	testKey                  = mustDeriveKey(testSecret)
)

func mustDeriveKey(secret config.Secret) Key {
	k, err := DeriveKey([]byte(secret))
	if err != nil {
		panic(err)
	}
	return k
}

// testNode is a started gossip node with its log.
type testNode struct {
	*Gossip
	name string
	logs *syncBuffer
}

// testConfig returns a fast loopback config for a control-plane node.
func testConfig(name string, port int, join ...string) Config {
	return Config{
		NodeName:      name,
		ClusterName:   "test",
		Key:           testKey,
		AdvertiseAddr: loopback,
		Port:          port,
		Join:          join,
		Fast:          true,
		Meta: Meta{
			NodeID:      uuid.NewString(),
			Role:        config.RoleControlPlane,
			Expect:      3,
			Phase:       "starting",
			Version:     "v0.0.0-test",
			ClusterName: "test",
			RPCAddr:     netip.AddrPortFrom(loopback, 9000),
		},
	}
}

// startNode starts gossip with cfg and its Run loop; both end with the
// test. The node's log is printed if the test fails.
func startNode(t *testing.T, cfg Config) (*testNode, error) {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).
		With("node", cfg.NodeName)
	g, err := New(cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		_ = g.Shutdown()
		if t.Failed() {
			t.Logf("log of %s:\n%s", cfg.NodeName, logs)
		}
	})
	go g.Run(t.Context())
	return &testNode{Gossip: g, name: cfg.NodeName, logs: logs}, nil
}

// mustStart is startNode for nodes on port 0, which cannot conflict.
func mustStart(t *testing.T, cfg Config) *testNode {
	t.Helper()
	n, err := startNode(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startCluster starts one node per config, in order, with ports picked
// beforehand so the configs can name each other (set them with
// withPorts). A port taken between picking and binding starts the whole
// cluster again on new ports.
func startCluster(t *testing.T, order []int, configs func(ports []int) []Config) []*testNode {
	t.Helper()
	var lastErr error
	for range 5 {
		cfgs := configs(freePorts(t, len(order)))
		nodes := make([]*testNode, len(cfgs))
		var err error
		for _, i := range order {
			if nodes[i], err = startNode(t, cfgs[i]); err != nil {
				break
			}
		}
		if err == nil {
			return nodes
		}
		if !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		lastErr = err
		for _, n := range nodes {
			if n != nil {
				_ = n.Shutdown()
			}
		}
	}
	t.Fatalf("no free ports: %v", lastErr)
	return nil
}

// freePorts returns n distinct ports that were free for both TCP and UDP
// on loopback a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		_ = l.Close()
		if err != nil {
			continue
		}
		_ = u.Close()
		ports = append(ports, port)
	}
	return ports
}

func addrOf(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// waitFor polls cond until it returns nil, failing the test with cond's
// last error after waitTimeout.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after %s: %v", what, waitTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// member returns the member called name in v's view.
func member(v View, name string) (Member, error) {
	for _, m := range v.Members() {
		if m.Name == name {
			return m, nil
		}
	}
	return Member{}, fmt.Errorf("%s not listed", name)
}

// seesAlive reports nil when every node sees every other alive, with the
// metadata it publishes.
func seesAlive(nodes ...*testNode) error {
	var errs []error
	for _, obs := range nodes {
		for _, n := range nodes {
			m, err := member(obs, n.name)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s: %w", obs.name, err))
			case m.State != StateAlive:
				errs = append(errs, fmt.Errorf("%s sees %s %s", obs.name, n.name, m.State))
			case m.MetaErr != nil:
				errs = append(errs, fmt.Errorf("%s cannot read %s's metadata: %w", obs.name, n.name, m.MetaErr))
			case m.Meta != n.LocalMeta():
				errs = append(errs, fmt.Errorf("%s sees %s's metadata as %+v, not %+v", obs.name, n.name, m.Meta, n.LocalMeta()))
			case m.Addr != n.Addr():
				errs = append(errs, fmt.Errorf("%s sees %s at %s, not %s", obs.name, n.name, m.Addr, n.Addr()))
			}
		}
	}
	return errors.Join(errs...)
}

// stateLog records the states one node sees another go through, in order.
type stateLog struct {
	mu     sync.Mutex
	states []State
}

// watchStates records the states obs sees name in until the test ends.
func watchStates(t *testing.T, obs View, name string) *stateLog {
	changed, cancel := obs.Subscribe()
	done := make(chan struct{})
	l := &stateLog{}
	record := func() {
		m, err := member(obs, name)
		if err != nil {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.states) == 0 || l.states[len(l.states)-1] != m.State {
			l.states = append(l.states, m.State)
		}
	}
	record()
	go func() {
		for {
			select {
			case <-done:
				return
			case <-changed:
				record()
			}
		}
	}()
	t.Cleanup(func() { cancel(); close(done) })
	return l
}

func (l *stateLog) get() []State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]State(nil), l.states...)
}

// startRawMemberlist starts a bare memberlist node of the test cluster
// whose metadata is meta, standing in for an agent we cannot understand.
func startRawMemberlist(t *testing.T, name string, meta []byte) *memberlist.Memberlist {
	t.Helper()
	keyring, err := memberlist.NewKeyring(nil, testKey)
	if err != nil {
		t.Fatal(err)
	}
	c := fastTiming().memberlist()
	c.Name, c.Label, c.Keyring = name, "test", keyring
	c.BindAddr, c.BindPort, c.AdvertiseAddr, c.AdvertisePort = "127.0.0.1", 0, "127.0.0.1", 0
	c.Delegate = rawMeta(meta)
	c.LogOutput = io.Discard
	ml, err := memberlist.Create(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	return ml
}

// rawMeta is a memberlist delegate that publishes fixed metadata.
type rawMeta []byte

func (m rawMeta) NodeMeta(int) []byte           { return m }
func (rawMeta) NotifyMsg([]byte)                {}
func (rawMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (rawMeta) LocalState(bool) []byte          { return nil }
func (rawMeta) MergeRemoteState([]byte, bool)   {}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
