package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestThreeNodesConvergeInAnyStartOrder(t *testing.T) {
	t.Parallel()
	order := rand.Perm(3)
	t.Logf("start order %v", order)
	nodes := startCluster(t, order, func(ports []int) []Config {
		join := []string{addrOf(ports[0]), addrOf(ports[1]), addrOf(ports[2])}
		var cfgs []Config
		for i, p := range ports {
			cfgs = append(cfgs, testConfig(fmt.Sprintf("cp-%d", i), p, join...))
		}
		return cfgs
	})
	started := time.Now()
	waitFor(t, "three nodes to see each other alive", func() error { return seesAlive(nodes...) })
	t.Logf("converged %s after the last start", time.Since(started).Round(time.Millisecond))
}

func TestMismatchedNodeCannotJoin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		mutate   func(*Config)
		receiver string // what the receiving side logs
	}{
		{"wrong secret", func(c *Config) { c.Key = mustDeriveKey("another secret, 32 characters ok") }, "no installed keys could decrypt"},
		{"wrong cluster name", func(c *Config) { c.ClusterName = "other" }, `unacceptable label \"other\"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := mustStart(t, testConfig("a", 0))
			b := mustStart(t, testConfig("b", 0, a.Addr().String()))
			waitFor(t, "a and b to join", func() error { return seesAlive(a, b) })

			cfg := testConfig("intruder", 0)
			tc.mutate(&cfg)
			x := mustStart(t, cfg)
			err := x.Join(t.Context(), []string{a.Addr().String()})
			want := fmt.Sprintf("join %s: no peer accepted us; check that cluster_secret and cluster_name match on every node", a.Addr())
			if err == nil || !errors.Is(err, ErrNotAccepted) || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("Join = %v, want an error starting %q", err, want)
			}
			t.Logf("Join: %v", err)

			// Run keeps the reason for status to show.
			ycfg := testConfig("intruder-2", 0, a.Addr().String())
			tc.mutate(&ycfg)
			y := mustStart(t, ycfg)
			go y.Run(t.Context())
			waitFor(t, "the intruder's join error", func() error {
				if err := y.JoinError(); !errors.Is(err, ErrNotAccepted) {
					return fmt.Errorf("JoinError = %v", err)
				}
				return nil
			})

			// A metadata change of a seen by b orders this check after
			// anything the intruder's attempt could have spread.
			if err := a.SetLocalMeta(func(m *Meta) { m.Phase = "after-intruder" }); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "b to see a's update", func() error { return seesAlive(a, b) })
			for _, n := range []*testNode{a, b} {
				if _, err := member(n, "intruder"); err == nil {
					t.Errorf("%s lists the intruder", n.name)
				}
			}
			if m, _ := member(x, "a"); m.State == StateAlive {
				t.Error("the intruder lists a as alive")
			}
			waitFor(t, "a to log why it refused the intruder", func() error {
				logs := a.logs.String()
				if !strings.Contains(logs, tc.receiver) || !strings.Contains(logs, "hint=\""+mismatchHint) {
					return fmt.Errorf("a's log has no line with %q and the hint", tc.receiver)
				}
				return nil
			})
		})
	}
}

func TestMetadataUpdatePropagates(t *testing.T) {
	t.Parallel()
	a := mustStart(t, testConfig("a", 0))
	b := mustStart(t, testConfig("b", 0, a.Addr().String()))
	c := mustStart(t, testConfig("c", 0, a.Addr().String()))
	waitFor(t, "three nodes to join", func() error { return seesAlive(a, b, c) })

	const id = 0xfedcba9876543210
	if err := b.SetLocalMeta(func(m *Meta) { m.EtcdClusterID, m.HasEtcdData, m.Phase = id, true, "etcd-ready" }); err != nil {
		t.Fatal(err)
	}
	if got := b.LocalMeta(); got.EtcdClusterID != id || got.Counter != 2 {
		t.Fatalf("LocalMeta after the update = %+v", got)
	}
	waitFor(t, "the etcd cluster ID to reach a and c", func() error {
		for _, obs := range []*testNode{a, c} {
			m, err := member(obs, "b")
			if err != nil {
				return err
			}
			if m.Meta.EtcdClusterID != id || !m.Meta.HasEtcdData || m.Meta.Phase != "etcd-ready" {
				return fmt.Errorf("%s sees b's metadata as %+v", obs.name, m.Meta)
			}
		}
		return nil
	})

	if err := b.SetLocalMeta(func(m *Meta) { m.Phase = "not a token" }); err == nil {
		t.Error("SetLocalMeta accepted a phase with spaces")
	}
	if got := b.LocalMeta(); got.Phase != "etcd-ready" || got.Counter != 2 {
		t.Errorf("a refused update changed the metadata to %+v", got)
	}
}

// SetLocalMeta does not wait for the broadcast: the agent changes its
// metadata at every bootstrap phase, on its critical path. Here no
// broadcast can finish (gossip rounds and probes an hour apart, no
// timeout): the change is ours at once and reaches the peer by state
// exchange.
func TestMetadataUpdateDoesNotWaitForTheBroadcast(t *testing.T) {
	t.Parallel()
	slow := func(c Config) Config {
		c.tune = func(t *timing) {
			base := t.memberlist
			t.memberlist = func() *memberlist.Config {
				mc := base()
				// Broadcasts ride on gossip rounds and on probes.
				mc.GossipInterval = time.Hour
				mc.ProbeInterval = time.Hour
				return mc
			}
			t.broadcastTimeout = time.Hour
		}
		return c
	}
	a := mustStart(t, slow(testConfig("a", 0)))
	b := mustStart(t, slow(testConfig("b", 0, a.Addr().String())))
	waitFor(t, "two nodes to join", func() error { return seesAlive(a, b) })

	returned := make(chan error, 1)
	go func() { returned <- b.SetLocalMeta(func(m *Meta) { m.Phase = "etcd-ready" }) }()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("SetLocalMeta waited for a broadcast that cannot finish")
	}
	if got := b.LocalMeta(); got.Phase != "etcd-ready" {
		t.Fatalf("LocalMeta after the update = %+v", got)
	}
	waitFor(t, "the new phase to reach a by state exchange", func() error {
		m, err := member(a, "b")
		if err != nil {
			return err
		}
		if m.Meta.Phase != "etcd-ready" {
			return fmt.Errorf("a sees b's phase as %q", m.Meta.Phase)
		}
		return nil
	})
}

func TestHardStopIsSuspectThenDeadAndTheNameIsReclaimable(t *testing.T) {
	t.Parallel()
	a := mustStart(t, testConfig("a", 0))
	b := mustStart(t, testConfig("b", 0, a.Addr().String()))
	c := mustStart(t, testConfig("c", 0, a.Addr().String()))
	waitFor(t, "three nodes to join", func() error { return seesAlive(a, b, c) })
	seenByA, seenByB := watchStates(t, a, "c"), watchStates(t, b, "c")
	oldAddr := c.Addr()

	stopped := time.Now()
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a and b to declare c dead", func() error {
		for _, obs := range []*testNode{a, b} {
			if m, _ := member(obs, "c"); m.State != StateDead {
				return fmt.Errorf("%s sees c %s", obs.name, m.State)
			}
		}
		return nil
	})
	t.Logf("c declared dead after %s", time.Since(stopped).Round(time.Millisecond))
	var sawSuspect bool
	for _, l := range []*stateLog{seenByA, seenByB} {
		states := l.get()
		if states[len(states)-1] != StateDead || slices.Contains(states, StateLeft) {
			t.Errorf("states seen for c: %v, want alive, [suspect,] dead", states)
		}
		sawSuspect = sawSuspect || slices.Equal(states, []State{StateAlive, StateSuspect, StateDead})
	}
	t.Logf("states seen for c: by a %v, by b %v", seenByA.get(), seenByB.get())
	if !sawSuspect {
		t.Errorf("neither a (%v) nor b (%v) saw c suspect before dead", seenByA.get(), seenByB.get())
	}

	// The host comes back reinstalled: same name, new address and ID.
	c2 := mustStart(t, testConfig("c", 0, a.Addr().String()))
	if c2.Addr() == oldAddr {
		t.Fatalf("c came back at its old address %s", oldAddr)
	}
	waitFor(t, "c's name to be reclaimed from its new address", func() error {
		return seesAlive(a, b, c2)
	})
	t.Logf("c reclaimed its name %s after it was stopped", time.Since(stopped).Round(time.Millisecond))
}

func TestLeaveIsSeenAsLeft(t *testing.T) {
	t.Parallel()
	a := mustStart(t, testConfig("a", 0))
	b := mustStart(t, testConfig("b", 0, a.Addr().String()))
	c := mustStart(t, testConfig("c", 0, a.Addr().String()))
	waitFor(t, "three nodes to join", func() error { return seesAlive(a, b, c) })

	if err := c.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a and b to see c leave", func() error {
		for _, obs := range []*testNode{a, b} {
			if m, _ := member(obs, "c"); m.State != StateLeft {
				return fmt.Errorf("%s sees c %s", obs.name, m.State)
			}
		}
		return nil
	})
	if err := c.Leave(time.Second); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if err := c.SetLocalMeta(func(m *Meta) { m.Phase = "late" }); err == nil {
		t.Error("SetLocalMeta after Leave succeeded")
	}
	if err := c.Shutdown(); err != nil {
		t.Errorf("Shutdown after Leave: %v", err)
	}
}

func TestJoinRetriesUntilThePeerStarts(t *testing.T) {
	t.Parallel()
	// b starts with a join address nobody listens on yet; a starts there
	// once b has failed at least once. If a's port was taken in between,
	// both start again on a new one.
	for range 5 {
		port := freePorts(t, 1)[0]
		b := mustStart(t, testConfig("b", 0, addrOf(port)))
		waitFor(t, "b to fail a join attempt", func() error {
			if !strings.Contains(b.logs.String(), "cannot join the cluster yet") {
				return errors.New("no failed attempt logged")
			}
			return nil
		})
		a, err := startNode(t, testConfig("a", port))
		if err != nil {
			t.Logf("starting a on port %d: %v; trying another", port, err)
			_ = b.Shutdown()
			continue
		}
		waitFor(t, "b to join a", func() error { return seesAlive(a, b) })
		return
	}
	t.Fatal("no free port for a")
}

func TestRejoinsWhenLeftAlone(t *testing.T) {
	t.Parallel()
	// a is configured to join b. b crashes and comes back at the same
	// address with nobody to join: a must find it again by itself.
	nodes := startCluster(t, []int{1, 0}, func(ports []int) []Config {
		return []Config{testConfig("a", ports[0], addrOf(ports[1])), testConfig("b", ports[1])}
	})
	a, b := nodes[0], nodes[1]
	waitFor(t, "a and b to join", func() error { return seesAlive(a, b) })
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to declare b dead", func() error {
		if m, _ := member(a, "b"); m.State != StateDead {
			return fmt.Errorf("a sees b %s", m.State)
		}
		return nil
	})
	cfg := testConfig("b", int(b.Addr().Port()))
	b2, err := startNode(t, cfg)
	if err != nil {
		t.Skipf("b's port was taken in the meantime: %v", err)
	}
	waitFor(t, "a to rejoin b", func() error { return seesAlive(a, b2) })
}

func TestLANTimings(t *testing.T) {
	t.Parallel()
	lan := func(name string, join ...string) Config {
		c := testConfig(name, 0, join...)
		c.Fast = false
		return c
	}
	a := mustStart(t, lan("a"))
	started := time.Now()
	b := mustStart(t, lan("b", a.Addr().String()))
	c := mustStart(t, lan("c", a.Addr().String()))
	waitFor(t, "three nodes to join", func() error { return seesAlive(a, b, c) })
	t.Logf("LAN timings: converged %s after the joins started", time.Since(started).Round(time.Millisecond))
}

func TestSubscribersHearOfChanges(t *testing.T) {
	t.Parallel()
	a := mustStart(t, testConfig("a", 0))
	changed, cancel := a.Subscribe()
	defer cancel()
	b := mustStart(t, testConfig("b", 0, a.Addr().String()))
	select {
	case <-changed:
	case <-time.After(waitTimeout):
		t.Fatal("no change signalled after b joined")
	}
	waitFor(t, "a and b to join", func() error { return seesAlive(a, b) })
	cancel()
	cancel() // twice is fine
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Key = nil }, "the gossip key is 0 bytes, not 32"},
		{func(c *Config) { c.ClusterName = "" }, "cluster name is empty"},
		{func(c *Config) { c.NodeName = "" }, "node name is empty"},
		{func(c *Config) { c.AdvertiseAddr = netip.Addr{} }, "advertise address is not set"},
		{func(c *Config) { c.Meta.NodeID = "node-1" }, `node ID "node-1" is not a UUID`},
	} {
		cfg := testConfig("a", 0)
		tc.mutate(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New = %v, want an error containing %q", err, tc.want)
		}
	}
}

func TestUndecodableMetadataIsListedWithItsError(t *testing.T) {
	t.Parallel()
	a := mustStart(t, testConfig("a", 0))
	stranger := startRawMemberlist(t, "stranger", []byte(`not json`))
	if _, err := stranger.Join([]string{a.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a to list the stranger", func() error {
		m, err := member(a, "stranger")
		if err != nil {
			return err
		}
		if m.State != StateAlive || m.MetaErr == nil {
			return fmt.Errorf("a sees the stranger %s with metadata error %v", m.State, m.MetaErr)
		}
		return nil
	})
}

func TestSecretIsNeverLogged(t *testing.T) {
	t.Parallel()
	a := mustStart(t, testConfig("a", 0))
	b := mustStart(t, testConfig("b", 0, a.Addr().String()))
	waitFor(t, "a and b to join", func() error { return seesAlive(a, b) })

	var printed syncBuffer
	cfg := testConfig("c", 0)
	fmt.Fprintf(&printed, "%v %+v %#v %s %x", cfg, cfg, cfg, cfg.Key, cfg.Key)
	slog.New(slog.NewTextHandler(&printed, nil)).Info("config", "cfg", cfg, "key", cfg.Key)
	for what, text := range map[string]string{"a's log": a.logs.String(), "b's log": b.logs.String(), "a printed config": printed.String()} {
		if strings.Contains(text, string(testSecret)) || strings.Contains(text, string(testKey)) || strings.Contains(text, fmt.Sprintf("%x", []byte(testKey))) {
			t.Errorf("%s contains the secret", what)
		}
	}
}
