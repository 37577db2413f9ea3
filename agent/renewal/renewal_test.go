package renewal

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

type noSystemd struct{ restarted []string }

func (f *noSystemd) Restart(_ context.Context, n string) error {
	f.restarted = append(f.restarted, n)
	return nil
}
func (f *noSystemd) Status(_ context.Context, n string) (units.UnitStatus, error) {
	return units.UnitStatus{Name: n, ActiveState: units.Active}, nil
}

func renewal(t *testing.T, phase nodestate.Phase, now func() time.Time) (*Renewal, *noSystemd) {
	t.Helper()
	cfg := configtest.ControlPlane(t)
	root := configtest.Root(t)
	peer := bootstrap.EtcdPeerURL(cfg.AdvertiseAddress, cfg.Etcd.PeerPort)
	dec := &nodestate.EtcdDecision{State: bootstrap.EtcdStartNew, Token: "t", Peers: map[string]string{cfg.NodeName: peer}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := bootstrap.NewRenderer(cfg, root, log)
	r.Membership = dec.Membership()
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	sd := &noSystemd{}
	store := nodestate.NewStore(root, &nodestate.State{NodeID: "n", Phase: phase, Etcd: dec}, nil)
	return New(Deps{Config: cfg, Root: root, Log: log, Store: store, Systemd: sd, Now: now}), sd
}

// A node whose etcd does not serve renews nothing, and says why; the
// status shows the pass.
func TestRenewRefusesWithoutEtcd(t *testing.T) {
	r, sd := renewal(t, nodestate.PhaseWaiting, nil)
	res := r.Renew(context.Background(), []string{"all"}, "on demand")
	if !strings.Contains(res.Error, "whose etcd member serves; this node is waiting-for-peers") || len(res.Renewed) != 0 || len(sd.restarted) != 0 {
		t.Errorf("result %+v, restarted %q", res, sd.restarted)
	}
	var s status.Status
	r.Report(&s)
	if s.LastRenewal == nil || s.LastRenewal.Error != res.Error {
		t.Errorf("status shows %+v", s.LastRenewal)
	}
}

// One pass at a time on a node.
func TestRenewOneAtATime(t *testing.T) {
	r, _ := renewal(t, nodestate.PhaseWaiting, nil)
	r.renewing.Store(true)
	if res := r.Renew(context.Background(), nil, "hourly"); res.Error != "a renewal is already running on this node" {
		t.Errorf("result %+v", res)
	}
}

// The hourly check comes an hour after the start, not before.
func TestStepWaitsAnHour(t *testing.T) {
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	r, _ := renewal(t, nodestate.PhaseWaiting, func() time.Time { return now })
	_ = r.Step(context.Background())
	if r.lastCheck != now {
		t.Fatalf("checked at %s", r.lastCheck)
	}
	now = now.Add(time.Hour)
	_ = r.Step(context.Background())
	if r.lastCheck != now {
		t.Errorf("no check an hour after the start (last %s)", r.lastCheck)
	}
}

// CAs are never renewed, and unknown names are listed against the known.
func TestSetAsideForRenewalRefuses(t *testing.T) {
	r, _ := renewal(t, nodestate.PhaseAPIReady, nil)
	if err := r.setAsideForRenewal([]string{"ca"}); err == nil || !strings.Contains(err.Error(), "ca is a CA: CAs are never renewed") {
		t.Errorf("ca: %v", err)
	}
	if err := r.setAsideForRenewal([]string{"nope"}); err == nil || !strings.Contains(err.Error(), `no certificate named "nope"`) || !strings.Contains(err.Error(), "apiserver") {
		t.Errorf("nope: %v", err)
	}
	if ok, _ := r.d.Root.Exists(bootstrap.PKIDir + "/ca.crt"); !ok {
		t.Error("a refused renewal moved the CA")
	}
}
