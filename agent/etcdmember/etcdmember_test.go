package etcdmember

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

// fakeSystemd records what the member asks; start runs etcd, or fails.
type fakeSystemd struct {
	mu      sync.Mutex
	applied []string
	started []string
	start   func() error
}

func (f *fakeSystemd) Apply(_ context.Context, specs []units.Spec) (units.Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range specs {
		f.applied = append(f.applied, s.Name)
	}
	return units.Changes{}, nil
}

func (f *fakeSystemd) Status(_ context.Context, n string) (units.UnitStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := units.UnitStatus{Name: n, ActiveState: units.Inactive}
	if slices.Contains(f.started, n) {
		st.ActiveState = units.Active
	}
	return st, nil
}

func (f *fakeSystemd) Start(_ context.Context, n string) error {
	f.mu.Lock()
	f.started = append(f.started, n)
	start := f.start
	f.mu.Unlock()
	if start != nil {
		return start()
	}
	return nil
}

func (f *fakeSystemd) Restart(ctx context.Context, n string) error { return f.Start(ctx, n) }
func (f *fakeSystemd) Journal(context.Context, string, int) ([]string, error) {
	return []string{"etcd: some journal line"}, nil
}

// fakeMembership says whether etcd removed this member, and records
// set-asides.
type fakeMembership struct {
	mu        sync.Mutex
	removed   bool
	notListed bool
	asked     int
	aside     []string
}

func (f *fakeMembership) NotListed(context.Context) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notListed
}

func (f *fakeMembership) Removed(context.Context) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	return f.removed
}

func (f *fakeMembership) SetAside(_ context.Context, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.aside = append(f.aside, reason)
	return nil
}

// member renders a control-plane node of a three-member cluster (or a
// one-member one) into a temp root and returns its etcd member.
func member(t *testing.T, peers int) (*Member, *fakeSystemd, *fakeMembership, *nodestate.Store, *config.Config, *hostfs.Root) {
	t.Helper()
	cfg := configtest.ControlPlane(t)
	cfg.Etcd.ClientPort, cfg.Etcd.PeerPort = configtest.FreePort(t), configtest.FreePort(t)
	root := configtest.Root(t)
	dec := &nodestate.EtcdDecision{State: bootstrap.EtcdStartNew, Token: "shop-test-1",
		Peers: map[string]string{cfg.NodeName: bootstrap.EtcdPeerURL(cfg.AdvertiseAddress, cfg.Etcd.PeerPort)}}
	for i := 2; i <= peers; i++ {
		dec.Peers[fmt.Sprintf("cp-%d", i)] = fmt.Sprintf("https://10.77.0.%d:2380", 10+i)
	}
	store := nodestate.NewStore(root, &nodestate.State{NodeID: "n", Phase: nodestate.PhaseRendered, Etcd: dec}, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := bootstrap.NewRenderer(cfg, root, log)
	r.SkipUnitFiles = true
	r.Membership = dec.Membership()
	written, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sd, mb := &fakeSystemd{}, &fakeMembership{}
	m := New(Deps{Config: cfg, Root: root, Log: log, Store: store, Systemd: sd, Membership: mb,
		Written: func() []bootstrap.Written { return written }})
	return m, sd, mb, store, cfg, root
}

// silent is an etcd that does not answer.
func silent(context.Context) error {
	return errors.New("context deadline exceeded")
}

// While etcd does not answer, the member waits for its peers by name,
// shows its start job's failure, and every tenth poll asks whether etcd
// removed it, setting its data aside if so.
func TestMemberWaits(t *testing.T) {
	m, sd, mb, store, _, _ := member(t, 3)
	m.d.Serving = silent
	sd.start = func() error { return errors.New("job failed: exit-code") }
	ctx := context.Background()
	if err := m.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sd.applied, []string{bootstrap.EtcdUnit}) {
		t.Errorf("applied %q, want the etcd unit only", sd.applied)
	}
	if m.Ready() || store.Phase() != nodestate.PhaseEtcdStart {
		t.Fatalf("ready %v, phase %s", m.Ready(), store.Phase())
	}
	var cond status.Condition
	for range 200 { // the start job runs in the background
		_ = m.Step(ctx)
		c, _ := m.cond.Get()
		if cond = c; strings.Contains(c.Message, "its start job") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if cond.Reason != status.ReasonWaitForEtcd || !strings.Contains(cond.Message, "peers cp-2, cp-3") || !strings.Contains(cond.Message, "job failed") {
		t.Errorf("condition %+v", cond)
	}
	if n := len(sd.started); n != 1 {
		t.Errorf("etcd started %d times, want once (systemd restarts it)", n)
	}
	for range 10 {
		_ = m.Step(ctx)
	}
	mb.mu.Lock()
	asked, aside := mb.asked, len(mb.aside)
	mb.mu.Unlock()
	if asked == 0 || aside != 0 {
		t.Errorf("asked whether removed %d times, set aside %d times; want asked, nothing set aside", asked, aside)
	}
	mb.mu.Lock()
	mb.removed = true
	mb.mu.Unlock()
	for range 10 {
		_ = m.Step(ctx)
	}
	if !slices.Equal(mb.aside, []string{"this etcd member was removed from the cluster"}) {
		t.Errorf("set aside %q", mb.aside)
	}
	m.Withdraw(ctx)
	if _, ok := m.cond.Get(); ok || m.Ready() {
		t.Error("a withdrawn member keeps its condition or readiness")
	}
}

// A member of a one-member cluster whose etcd (a real one, from the
// rendered config) answers is Ready, and the node is etcd-ready.
func TestMemberServes(t *testing.T) {
	m, sd, _, store, cfg, root := member(t, 1)
	var etcd *embed.Etcd
	sd.start = func() error {
		data, err := root.ReadFile(bootstrap.EtcdConfigFile)
		if err != nil {
			return err
		}
		data = bytes.Replace(data, []byte("http://127.0.0.1:2381"), []byte(fmt.Sprintf("http://127.0.0.1:%d", configtest.FreePort(t))), 1)
		under, err := bootstrap.EtcdConfigUnder(root, data)
		if err != nil {
			return err
		}
		file := filepath.Join(t.TempDir(), "etcd.yaml")
		if err := os.WriteFile(file, under, 0o600); err != nil {
			return err
		}
		ecfg, err := embed.ConfigFromFile(file)
		if err != nil {
			return err
		}
		ecfg.LogLevel = "error"
		etcd, err = embed.StartEtcd(ecfg)
		return err
	}
	t.Cleanup(func() {
		if etcd != nil {
			etcd.Close()
		}
	})
	ctx := context.Background()
	for i := 0; i < 300 && !m.Ready(); i++ {
		if err := m.Step(ctx); err != nil {
			t.Fatal(err)
		}
		if !m.Ready() {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !m.Ready() || store.Phase() != nodestate.PhaseEtcdReady {
		c, _ := m.cond.Get()
		t.Fatalf("ready %v, phase %s, condition %+v (etcd on %d)", m.Ready(), store.Phase(), c, cfg.Etcd.ClientPort)
	}
	if _, ok := m.cond.Get(); ok {
		t.Error("a serving member keeps a condition")
	}
}

// A member that served before and finds its data gone starts nothing:
// it refuses, saying what happened and what to run (etcd under a "new"
// decision would found a second, empty cluster).
func TestMemberRefusesLostData(t *testing.T) {
	m, sd, _, store, _, _ := member(t, 3)
	m.d.Serving = silent
	if err := store.Update(func(st *nodestate.State) error { st.Etcd.Served = time.Now(); return nil }); err != nil {
		t.Fatal(err)
	}
	err := m.Step(context.Background())
	if err == nil || !strings.Contains(err.Error(), "etcd's data is gone") || !strings.Contains(err.Error(), "ecom-agent reset --force") {
		t.Fatalf("step: %v", err)
	}
	if len(sd.applied)+len(sd.started) != 0 {
		t.Errorf("applied %q, started %q after the data was lost", sd.applied, sd.started)
	}
	if c, _ := m.cond.Get(); c.Reason != status.ReasonDataLost || !c.Refused {
		t.Errorf("condition %+v", c)
	}
}

// A member whose data is gone and that the cluster (with a quorum) no
// longer lists is a new node: its agent sets the rest aside and joins
// again, starting nothing on the old decision.
func TestMemberWithLostDataNoLongerListedJoinsAgain(t *testing.T) {
	m, sd, mb, store, _, _ := member(t, 3)
	m.d.Serving = silent
	mb.notListed = true
	if err := store.Update(func(st *nodestate.State) error { st.Etcd.Served = time.Now(); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := m.Step(context.Background()); err != nil {
		t.Fatalf("step: %v", err)
	}
	if len(sd.applied)+len(sd.started) != 0 {
		t.Errorf("applied %q, started %q on the old decision", sd.applied, sd.started)
	}
	if len(mb.aside) != 1 || !strings.Contains(mb.aside[0], "no longer lists its member") {
		t.Errorf("set aside %q", mb.aside)
	}
	if c, ok := m.cond.Get(); ok && c.Refused {
		t.Errorf("refused: %+v", c)
	}
}

// Data the agent cannot read is not "no data": etcd is not started.
func TestMemberRefusesUnreadableData(t *testing.T) {
	m, sd, _, _, _, root := member(t, 3)
	m.d.Serving = silent
	if _, err := root.Remove(bootstrap.EtcdDataDir); err != nil {
		t.Fatal(err)
	}
	if _, err := root.WriteFile(bootstrap.EtcdDataDir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Step(context.Background()); err == nil || !strings.Contains(err.Error(), "cannot read etcd's data") {
		t.Fatalf("step: %v", err)
	}
	if len(sd.started) != 0 {
		t.Errorf("started %q on unreadable data", sd.started)
	}
}

// The first time the member serves is recorded with its decision.
func TestMemberRecordsServing(t *testing.T) {
	m, _, _, store, _, _ := member(t, 1)
	m.d.Serving = func(context.Context) error { return nil }
	if err := m.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if dec := store.Etcd(); !m.Ready() || dec.Served.IsZero() {
		t.Errorf("ready %v, served %v", m.Ready(), dec.Served)
	}
}
