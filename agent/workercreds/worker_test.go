package workercreds

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/peer"
	"github.com/ecom-platform/ecom-agent/status"
)

// A worker with no control-plane agent in sight waits for its
// credentials, by reason, and is not ready; nothing is written.
func TestWorkerWaitsForCredentials(t *testing.T) {
	cfg := configtest.Worker(t)
	root := configtest.Root(t)
	cli, err := peer.NewClient(peer.Options{Secret: cfg.Secret(), ClusterName: cfg.ClusterName, NodeID: "w", NodeName: cfg.NodeName})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	w := New(Deps{Config: cfg, Root: root, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Members: func() []gossip.Member { return nil }, Client: cli})
	if err := w.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	var s status.Status
	w.Report(&s)
	if w.Ready() || len(s.Conditions) != 1 || s.Conditions[0].Reason != status.ReasonWaitForCredentials ||
		!strings.Contains(s.Conditions[0].Message, "no control-plane agent in the gossip view yet") {
		t.Errorf("ready %v, conditions %+v", w.Ready(), s.Conditions)
	}
	if w.LoadBalancer() != nil {
		t.Error("a load balancer runs before the worker has credentials")
	}
	if err := w.Stop(context.Background()); err != nil {
		t.Error(err)
	}
}
