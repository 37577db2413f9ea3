package membership

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/units"
)

// A promise request to a candidate that is not there yet (not in the
// gossip view, its agent starting) is asked again while the round
// stands: it reaches the candidate once it comes; and it stops being
// asked once the round is over.
func TestPromiseAskedAgainWhileTheRoundStands(t *testing.T) {
	cfgA := configtest.ControlPlane(t)
	a := startLoopback(t, cfgA, nil)
	cfgB := configtest.ControlPlane(t)
	cfgB.NodeName = "cp-2"
	cfgB.Gossip.Join = []string{a.m.gossip().Addr().String()}
	mb, storeB, rootB := newMembership(t, cfgB, &scriptedSystemd{st: units.UnitStatus{Name: bootstrap.EtcdUnit, ActiveState: units.Active}}, nil)
	idA, idB := quorum.NodeID(a.store.Snapshot().NodeID), quorum.NodeID(storeB.Snapshot().NodeID)
	p := quorum.Proposal{Seed: idA, Attempt: 1, ClusterName: cfgA.ClusterName, Expect: cfgA.Expect, TTL: 30 * time.Second,
		Members: []quorum.Member{{ID: idA, Name: "cp-1"}, {ID: idB, Name: "cp-2"}}}
	a.m.store.Lock()
	a.m.round = &quorum.Round{Proposal: p, Sent: time.Now()}
	a.m.store.Unlock()

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var rep quorum.PromiseReply
		done <- a.m.callWhileProposed(ctx, p, idB, methodPromise, quorum.PromiseRequest{Proposal: p}, &rep)
	}()
	time.Sleep(time.Second) // a few failed requests: cp-2 is in nobody's view
	start(t, mb, storeB, rootB, cfgB)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the request never reached cp-2 once it came: %v", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("the request neither reached cp-2 nor gave up")
	}

	// The round over, a request to a node that never comes stops.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var rep quorum.PromiseReply
		done <- a.m.callWhileProposed(ctx, p, quorum.NodeID(uuid.NewString()), methodPromise, quorum.PromiseRequest{Proposal: p}, &rep)
	}()
	time.Sleep(500 * time.Millisecond)
	a.m.store.Lock()
	a.m.round = nil
	a.m.store.Unlock()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a request to a node that is nowhere succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request went on after its round was over")
	}
}
