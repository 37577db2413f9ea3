package vip

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// campaign is one candidacy: an etcd session (the lease) and a
// Campaign call that returns when this node is the oldest candidate.
// Nothing in it blocks a step: the session and the campaign run in
// their own goroutine, which wakes the component when they end.
type campaign struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has returned

	mu      sync.Mutex
	session *concurrency.Session
	elected bool
	ended   bool // the session ended or the campaign failed
	err     error
}

// stand starts a candidacy of node on cli.
func stand(cli *clientv3.Client, node string, wake func()) *campaign {
	ctx, cancel := context.WithCancel(context.Background())
	c := &campaign{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer wake()
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(leaseTTL), concurrency.WithContext(ctx))
		if err != nil {
			c.end(fmt.Errorf("etcd session for the VIP's election: %w", err))
			return
		}
		c.mu.Lock()
		c.session = s
		c.mu.Unlock()
		if err := concurrency.NewElection(s, ElectionKey).Campaign(ctx, node); err != nil {
			c.end(fmt.Errorf("campaign for the VIP: %w", err))
			return
		}
		c.mu.Lock()
		c.elected = true
		c.mu.Unlock()
		wake()
		select {
		case <-s.Done():
			c.end(nil)
		case <-ctx.Done():
		}
	}()
	return c
}

func (c *campaign) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended, c.err = true, err
}

// won reports whether this node was elected.
func (c *campaign) won() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.elected
}

// over reports whether the candidacy ended on its own: its session's
// lease is gone or the campaign failed.
func (c *campaign) over() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// failure is why the campaign failed; nil when it ended with its session.
func (c *campaign) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// close ends the candidacy: the session's lease is revoked, which
// deletes this node's key, so the next candidate is elected at once.
func (c *campaign) close(ctx context.Context) {
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s != nil {
		// Close revokes the lease, bounded by its TTL.
		_ = s.Close()
	}
	c.cancel()
	select {
	case <-c.done:
	case <-ctx.Done():
	case <-time.After(leaseTTL * time.Second):
	}
}
