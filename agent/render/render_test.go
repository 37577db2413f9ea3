package render

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
)

func files(t *testing.T, cfg *config.Config, st *nodestate.State) (*Files, *nodestate.Store, *hostfs.Root) {
	t.Helper()
	root := configtest.Root(t)
	store := nodestate.NewStore(root, st, nil)
	return New(cfg, root, slog.New(slog.NewTextHandler(io.Discard, nil)), store), store, root
}

// A control-plane node renders with its decided membership, says so in
// its phase, renders nothing again on the next step, and renders again
// once withdrawn.
func TestFilesControlPlane(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	peer := bootstrap.EtcdPeerURL(cfg.AdvertiseAddress, cfg.Etcd.PeerPort)
	f, store, root := files(t, cfg, &nodestate.State{NodeID: "n", Phase: nodestate.PhaseWaiting, Etcd: &nodestate.EtcdDecision{
		State: bootstrap.EtcdStartNew, Token: "shop-test-1", Peers: map[string]string{cfg.NodeName: peer},
	}})
	ctx := context.Background()
	if f.Ready() {
		t.Fatal("ready before rendering")
	}
	if err := f.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if !f.Ready() || store.Phase() != nodestate.PhaseRendered || len(f.Written()) == 0 {
		t.Fatalf("ready %v, phase %s, %d written", f.Ready(), store.Phase(), len(f.Written()))
	}
	etcdConf, err := root.ReadFile(bootstrap.EtcdConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := "initial-cluster: " + cfg.NodeName + "=" + peer; !strings.Contains(string(etcdConf), want) || !strings.Contains(string(etcdConf), "shop-test-1") {
		t.Errorf("etcd config lacks the decided membership (%q):\n%s", want, etcdConf)
	}
	if ok, _ := root.Exists(bootstrap.PKIDir + "/ca.key"); !ok {
		t.Error("no cluster CA rendered")
	}
	before := f.Written()
	if err := f.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if after := f.Written(); len(after) != len(before) || after[0] != before[0] {
		t.Error("a second step rendered again")
	}
	f.Withdraw(ctx)
	if f.Ready() || len(f.Written()) != 0 {
		t.Fatal("a withdrawn render is still ready")
	}
	if err := f.Step(ctx); err != nil || !f.Ready() {
		t.Fatalf("render after withdraw: %v", err)
	}
}

// A worker renders what needs no CA key, and waits as worker-waiting.
func TestFilesWorker(t *testing.T) {
	f, store, root := files(t, configtest.Worker(t), &nodestate.State{NodeID: "n", Phase: nodestate.PhaseStarting})
	if err := f.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !f.Ready() || store.Phase() != nodestate.PhaseWorkerWaiting {
		t.Fatalf("ready %v, phase %s", f.Ready(), store.Phase())
	}
	if ok, _ := root.Exists(bootstrap.PKIDir + "/ca.key"); ok {
		t.Error("a worker got the CA key")
	}
	if ok, _ := root.Exists(bootstrap.KubeletConfigFile); !ok {
		t.Error("a worker got no kubelet config")
	}
}
