package peer

import (
	"testing"
	"time"
)

func TestReplayCache(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	c := newReplayCache(3)
	id := func(b byte) requestID { return requestID{b} }

	if v := c.check(id(1), now, now); v != replayFresh {
		t.Fatalf("first sight = %v, want fresh", v)
	}
	// Seen until its timestamp leaves the window, whatever the receiver's
	// clock says in between.
	for _, at := range []time.Duration{0, time.Minute, ReplayWindow} {
		if v := c.check(id(1), now, now.Add(at)); v != replaySeen {
			t.Errorf("replay %v later = %v, want seen", at, v)
		}
	}
	c.check(id(2), now, now)
	c.check(id(3), now, now)
	if v := c.check(id(4), now, now); v != replayFull {
		t.Errorf("fourth ID in a cache of 3 = %v, want full", v)
	}
	// Once their timestamps are stale, IDs are forgotten and make room.
	later := now.Add(2*ReplayWindow + time.Minute)
	if v := c.check(id(4), later, later); v != replayFresh {
		t.Errorf("after expiry = %v, want fresh", v)
	}
	if c.n != 1 || len(c.buckets) != 1 {
		t.Errorf("after expiry the cache holds %d IDs in %d buckets, want 1 in 1", c.n, len(c.buckets))
	}

	// A timestamp ahead of the receiver's clock is remembered until it too
	// is stale.
	c = newReplayCache(3)
	c.check(id(5), now.Add(ReplayWindow), now)
	if v := c.check(id(5), now.Add(ReplayWindow), now.Add(2*ReplayWindow)); v != replaySeen {
		t.Errorf("replay of a request stamped in the future = %v, want seen", v)
	}
}
