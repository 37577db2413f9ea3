package vip

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// campaign is one candidacy: its own etcd client, a session (the lease)
// and a Campaign call that returns when this node is the oldest
// candidate. Nothing in it blocks a step: they run in their own
// goroutine, which wakes the component when the node is elected and when
// the candidacy ends. Closing the client ends whatever etcd call the
// goroutine is in, so it never outlives close.
type campaign struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has returned

	mu      sync.Mutex
	cli     *clientv3.Client
	session *concurrency.Session
	elected bool
	ended   bool // the session ended or the campaign failed
	err     error
}

// stand starts a candidacy of node with a client from newClient.
func stand(newClient func() (*clientv3.Client, error), node string, wake func()) *campaign {
	ctx, cancel := context.WithCancel(context.Background())
	c := &campaign{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer wake()
		cli, err := newClient()
		if err != nil {
			c.end(fmt.Errorf("etcd client for the VIP's election: %w", err))
			return
		}
		// Closed here when the candidacy was closed meanwhile: close
		// may have looked before it was made.
		defer func() {
			if ctx.Err() != nil {
				cli.Close()
			}
		}()
		c.mu.Lock()
		c.cli = cli
		c.mu.Unlock()
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(leaseTTL), concurrency.WithContext(ctx))
		if err != nil {
			c.end(fmt.Errorf("etcd session for the VIP's election: %w", err))
			return
		}
		c.mu.Lock()
		c.session = s
		c.mu.Unlock()
		// The campaign ends with the session: a lease that expired
		// while it waited leaves it no key to win with.
		cctx, ccancel := context.WithCancel(ctx)
		defer ccancel()
		go func() {
			select {
			case <-s.Done():
				ccancel()
			case <-cctx.Done():
			}
		}()
		if err := concurrency.NewElection(s, ElectionKey).Campaign(cctx, node); err != nil {
			select {
			case <-s.Done(): // the lease ended while it waited
				c.end(nil)
			default:
				c.end(fmt.Errorf("campaign for the VIP: %w", err))
			}
			return
		}
		c.mu.Lock()
		select {
		case <-s.Done():
			c.ended = true
		default:
			c.elected = true
		}
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

// won reports whether this node was elected (its session may have ended
// since).
func (c *campaign) won() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.elected
}

// holding reports whether this node was elected and its session lives.
func (c *campaign) holding() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.elected && !c.ended
}

// over reports whether the candidacy ended on its own: its session's
// lease is gone or the campaign failed.
func (c *campaign) over() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// failure is why the campaign failed; nil when it ended with its
// session (the lease expired: etcd had no leader for its TTL, or this
// node was cut off).
func (c *campaign) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// close ends the candidacy: the lease is revoked (when it still lives),
// which deletes this node's key, so the next candidate is elected at
// once; then the client closes. Bounded by ctx and opTimeout.
func (c *campaign) close(ctx context.Context) {
	c.mu.Lock()
	cli, s, ended := c.cli, c.session, c.ended
	c.mu.Unlock()
	if s != nil && !ended {
		s.Orphan()
		rctx, cancel := context.WithTimeout(ctx, opTimeout)
		_, _ = cli.Revoke(rctx, s.Lease())
		cancel()
	}
	c.cancel()
	if cli != nil {
		cli.Close()
	}
	select {
	case <-c.done:
	case <-ctx.Done():
	case <-time.After(opTimeout):
	}
}
