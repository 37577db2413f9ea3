package peer

import (
	"sync"
	"time"
)

// ReplayWindow is how far a request's timestamp may be from the
// receiver's clock. A receiver remembers each request ID for as long as
// its timestamp is within the window, so a captured request is accepted
// at most once. Nodes' clocks must agree to well within it (NTP).
const ReplayWindow = 2 * time.Minute

// replayCache remembers the IDs of accepted requests until their
// timestamps leave the replay window. IDs are kept in buckets by the time
// they expire, so forgetting them is dropping whole buckets, and the
// number kept is capped: when full, the cache refuses new IDs rather than
// forget ones that could still be replayed. Only authenticated requests
// reach it, so only key holders can fill it.
type replayCache struct {
	mu      sync.Mutex
	span    time.Duration
	max     int
	n       int
	buckets map[int64]map[requestID]struct{} // by expiry / span, rounded up
}

func newReplayCache(max int) *replayCache {
	return &replayCache{
		span:    ReplayWindow / 4,
		max:     max,
		buckets: make(map[int64]map[requestID]struct{}),
	}
}

// replayVerdict is what the cache says of a request ID.
type replayVerdict int

const (
	replayFresh replayVerdict = iota // not seen before; now recorded
	replaySeen                       // seen within the window
	replayFull                       // not seen, but no room to record it
)

// check records id, sent at time sent, as seen at time now, unless it was
// seen before. The caller has already checked that sent is within
// ReplayWindow of now.
func (c *replayCache) check(id requestID, sent, now time.Time) replayVerdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A bucket holds IDs expiring in ((k-1)*span, k*span]; once now is past
	// k*span, their timestamps are outside the window and fail that check.
	for k, b := range c.buckets {
		if time.Unix(0, k*int64(c.span)).Before(now) {
			c.n -= len(b)
			delete(c.buckets, k)
		}
	}
	for _, b := range c.buckets {
		if _, ok := b[id]; ok {
			return replaySeen
		}
	}
	if c.n >= c.max {
		return replayFull
	}
	expiry := sent.Add(ReplayWindow).UnixNano()
	k := (expiry + int64(c.span) - 1) / int64(c.span)
	b := c.buckets[k]
	if b == nil {
		b = make(map[requestID]struct{})
		c.buckets[k] = b
	}
	b[id] = struct{}{}
	c.n++
	return replayFresh
}
