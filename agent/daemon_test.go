package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/units"
)

// fakeSystemd records what the daemon asks of systemd.
type fakeSystemd struct {
	mu      sync.Mutex
	applied []string
	started []string
}

func (f *fakeSystemd) Apply(_ context.Context, specs []units.Spec) (units.Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range specs {
		f.applied = append(f.applied, s.Name)
	}
	return units.Changes{}, nil
}
func (f *fakeSystemd) Start(_ context.Context, n string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, n)
	return nil
}
func (f *fakeSystemd) Restart(context.Context, string) error { return nil }
func (f *fakeSystemd) Stop(context.Context, string) error    { return nil }
func (f *fakeSystemd) Status(_ context.Context, n string) (units.UnitStatus, error) {
	return units.UnitStatus{Name: n, ActiveState: "inactive"}, nil
}
func (f *fakeSystemd) Journal(context.Context, string, int) ([]string, error) { return nil, nil }

// parse parses a test config and moves the node onto loopback, where
// the test can bind gossip and the RPC endpoint (a config may not name a
// loopback address: other nodes could not reach it).
func parse(t *testing.T, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml", config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.AdvertiseAddress = netip.MustParseAddr("127.0.0.1")
	return cfg
}

// runUntilReady runs a daemon until it sends READY=1, then stops it.
func runUntilReady(t *testing.T, cfg *config.Config) (*Daemon, *fakeSystemd, []string) {
	t.Helper()
	root := testRoot(t)
	sd := &fakeSystemd{}
	var (
		mu    sync.Mutex
		notes []string
	)
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := New(Deps{
		Config:  cfg,
		Root:    root,
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Systemd: func(context.Context) (Systemd, error) { return sd, nil },
		Notify: func(s string) error {
			mu.Lock()
			notes = append(notes, s)
			mu.Unlock()
			if s == "READY=1" {
				close(ready)
			}
			return nil
		},
	})
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon stopped before READY=1: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no READY=1 within 30s")
	}
	// READY=1 comes as soon as the agent serves; then it settles on
	// what it waits for.
	for i := 0; i < 100 && d.Status().Waiting == ""; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return d, sd, notes
}

// cpConfig is a control-plane node's config on loopback, with free ports
// for gossip and the agent's RPC endpoint.
func cpConfig(t *testing.T) string {
	return fmt.Sprintf(`
cluster_name = "shop-test"
role = "control-plane"
node_name = "cp-1"
advertise_address = "10.77.0.11"
cluster_secret = "test-secret-0123456789abcdef0123456789"
[gossip]
port = %d
rpc_port = %d
`, freePort(t), freePort(t))
}

// freePort returns a TCP and UDP port free on 127.0.0.1 right now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			_ = pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// A control-plane node of a three-node cluster waits for its peers and
// creates nothing, least of all a CA of its own.
func TestControlPlaneWaitsWithoutCreatingCAs(t *testing.T) {
	d, sd, notes := runUntilReady(t, parse(t, cpConfig(t)))
	if ok, _ := d.d.Root.Exists("/etc/kubernetes/pki/ca.key"); ok {
		t.Error("a node waiting for its peers created a CA")
	}
	if len(sd.applied) != 0 || len(sd.started) != 0 {
		t.Errorf("applied %v, started %v; want nothing", sd.applied, sd.started)
	}
	st := d.Status()
	if st.Phase != PhaseWaiting || !strings.Contains(st.Waiting, "2 more control-plane nodes") || st.Verdict != Degraded {
		t.Errorf("status %+v", st)
	}
	if last := notes[len(notes)-1]; last != "STOPPING=1" {
		t.Errorf("last notification %q, want STOPPING=1", last)
	}
}

func TestWorkerWaitsForTheControlPlane(t *testing.T) {
	toml := strings.Replace(cpConfig(t), `"control-plane"`, `"worker"`, 1)
	d, sd, _ := runUntilReady(t, parse(t, toml))
	if len(sd.applied) != 0 {
		t.Errorf("a worker applied %v", sd.applied)
	}
	if st := d.Status(); st.Phase != PhaseWorkerIdle || st.Waiting == "" {
		t.Errorf("status %+v", st)
	}
}
