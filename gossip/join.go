package gossip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Errors a failed Join wraps, after the addresses it tried.
var (
	// ErrNotAccepted means a peer was reached but did not take us in,
	// which is what a wrong secret or cluster name looks like from the
	// joining side; the peer logs the reason.
	ErrNotAccepted = errors.New("no peer accepted us; check that cluster_secret and cluster_name match on every node")
	// ErrUnreachable means no peer could be reached at all.
	ErrUnreachable = errors.New("no peer reachable")
)

// Join makes one attempt to join the cluster through the peers at addrs
// ("host" or "host:port"), contacting them in parallel; each contact is
// bounded by memberlist's TCP timeout. This node's own address is skipped,
// so every node can be given the same list; if nothing is left, Join
// returns nil at once. It succeeds when any peer takes us in.
func (g *Gossip) Join(ctx context.Context, addrs []string) error {
	_, err := g.join(ctx, addrs, g.targets(ctx, addrs), false)
	return err
}

// JoinTargets returns the configured join addresses (Config.Join) as Run
// last resolved them: the other nodes' gossip addresses and whether this
// node is at one of them; ok is false until every address resolved.
func (g *Gossip) JoinTargets() (others []netip.AddrPort, self, ok bool) {
	g.joinMu.Lock()
	defer g.joinMu.Unlock()
	jt := g.joinTargets
	if jt == nil || len(jt.errs) > 0 {
		return nil, false, false
	}
	return slices.Clone(jt.others), jt.self, true
}

// Run joins the peers of Config.Join and keeps this node joined until ctx
// is done or gossip is shut down. While the node is alone it retries with
// exponential backoff and jitter; once joined, it periodically contacts
// configured peers that are not alive members, which heals partitions
// that outlasted memberlist's own retries. A node with nobody to join
// waits for others to join it.
func (g *Gossip) Run(ctx context.Context) {
	if len(g.cfg.Join) == 0 {
		g.log.Info("no join addresses; waiting for other nodes to join us")
		return
	}
	bo := backoff{min: g.t.joinBackoffMin, max: g.t.joinBackoffMax}
	for {
		alone := !g.hasPeers()
		jt := g.targets(ctx, g.cfg.Join)
		g.joinMu.Lock()
		g.joinTargets = &jt
		g.joinMu.Unlock()
		tried, err := g.join(ctx, g.cfg.Join, jt, !alone)
		if alone {
			g.setJoinErr(err)
		} else {
			g.setJoinErr(nil)
		}
		if ctx.Err() != nil || g.isStopped() {
			return
		}
		wait := g.t.rejoinInterval
		switch {
		case err != nil && alone:
			wait = bo.next()
			level := g.log.Info
			if errors.Is(err, ErrNotAccepted) {
				level = g.log.Warn
			}
			level("cannot join the cluster yet; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
		case err != nil:
			g.log.Debug("cannot reach a configured peer", "err", err)
		case alone && tried > 0:
			bo.reset()
			g.log.Info("joined the cluster", "members", len(g.Members()))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-g.done:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// join contacts the peers at addrs (resolved as jt), all of them or, with
// onlyMissing, those that are not alive members. It returns how many it
// tried.
func (g *Gossip) join(ctx context.Context, addrs []string, jt joinTargets, onlyMissing bool) (int, error) {
	targets, resolveErrs := slices.Clone(jt.others), jt.errs
	if onlyMissing {
		live := g.liveAddrs()
		targets = slices.DeleteFunc(targets, func(a netip.AddrPort) bool { return live[a] })
	}
	if len(targets) == 0 && len(resolveErrs) == 0 {
		return 0, nil
	}

	results := make(chan error, len(targets))
	for _, a := range targets {
		go func() {
			if _, err := g.ml.Join([]string{a.String()}); err != nil {
				results <- fmt.Errorf("%s: %s", a, memberlistJoinError(err))
				return
			}
			results <- nil
		}()
	}
	errs := resolveErrs
	notAccepted, joined := false, false
	for range targets {
		select {
		case <-ctx.Done():
			return len(targets), fmt.Errorf("join: %w", ctx.Err())
		case err := <-results:
			if err == nil {
				joined = true
				continue
			}
			errs = append(errs, err)
			notAccepted = notAccepted || !unreachable(err)
		}
	}
	if joined {
		return len(targets), nil
	}
	tried := make([]string, 0, len(targets))
	for _, a := range targets {
		tried = append(tried, a.String())
	}
	if len(tried) == 0 {
		tried = addrs
	}
	cause := ErrUnreachable
	if notAccepted {
		cause = ErrNotAccepted
	}
	details := make([]string, 0, len(errs))
	for _, err := range errs {
		details = append(details, err.Error())
	}
	return len(targets), fmt.Errorf("join %s: %w (%s)", strings.Join(tried, ", "), cause, strings.Join(details, "; "))
}

// memberlistJoinError returns the text of what memberlist's Join said
// about one address, without its multierror framing and the address.
func memberlistJoinError(err error) string {
	var multi interface{ WrappedErrors() []error }
	if errors.As(err, &multi) && len(multi.WrappedErrors()) == 1 {
		err = multi.WrappedErrors()[0]
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "failed to join "); ok {
		if _, after, ok := strings.Cut(rest, ": "); ok {
			msg = after
		}
	}
	return strings.TrimSpace(msg)
}

// unreachable reports whether a join error means nobody answered, as
// opposed to a peer that answered and refused. memberlist flattens errors
// to text, so this goes by the text.
func unreachable(err error) bool {
	msg := err.Error()
	for _, s := range []string{"connection refused", "i/o timeout", "no route to host", "network is unreachable",
		"no such host", "cannot resolve"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// joinTargets are join addresses resolved: the other nodes' gossip
// addresses, whether this node's own was among them, and what did not
// resolve.
type joinTargets struct {
	others []netip.AddrPort
	self   bool
	errs   []error
}

// targets resolves addrs to gossip addresses.
func (g *Gossip) targets(ctx context.Context, addrs []string) joinTargets {
	var jt joinTargets
	for _, s := range addrs {
		host, port, err := splitJoinAddr(s, g.cfg.joinPort())
		if err != nil {
			jt.errs = append(jt.errs, err)
			continue
		}
		ips, err := resolve(ctx, host)
		if err != nil {
			jt.errs = append(jt.errs, fmt.Errorf("%s: cannot resolve: %w", s, err))
			continue
		}
		for _, ip := range ips {
			a := netip.AddrPortFrom(ip.Unmap(), port)
			switch {
			case g.isSelf(a):
				jt.self = true
			case !slices.Contains(jt.others, a):
				jt.others = append(jt.others, a)
			}
		}
	}
	return jt
}

// resolve returns the addresses of host, an IP address or a name.
func resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// isSelf reports whether a is this node's gossip address.
func (g *Gossip) isSelf(a netip.AddrPort) bool {
	if a == g.addr {
		return true
	}
	return a.Port() == g.addr.Port() && g.cfg.BindAddr.IsValid() && a.Addr() == g.cfg.BindAddr
}

// splitJoinAddr splits a join address into host and port, defaulting the
// port.
func splitJoinAddr(s string, defaultPort int) (string, uint16, error) {
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return ip.String(), uint16(defaultPort), nil
	}
	if !strings.Contains(s, ":") {
		return s, uint16(defaultPort), nil
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("join address %q: %w", s, err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("join address %q: port %q is not 1-65535", s, p)
	}
	return host, uint16(port), nil
}

// hasPeers reports whether another node is alive or suspect.
func (g *Gossip) hasPeers() bool {
	for _, m := range g.Members() {
		if m.Name != g.cfg.NodeName && (m.State == StateAlive || m.State == StateSuspect) {
			return true
		}
	}
	return false
}

// liveAddrs returns the addresses of alive and suspect members.
func (g *Gossip) liveAddrs() map[netip.AddrPort]bool {
	live := make(map[netip.AddrPort]bool)
	for _, m := range g.Members() {
		if m.State == StateAlive || m.State == StateSuspect {
			live[m.Addr] = true
		}
	}
	return live
}

// backoff yields exponentially growing waits with jitter: each wait is
// drawn from [d/2, d], d doubling from min up to max.
type backoff struct {
	min, max time.Duration
	n        int
}

func (b *backoff) next() time.Duration {
	d := b.max
	if b.n < 30 && b.min<<b.n < b.max {
		d = b.min << b.n
	}
	b.n++
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.n = 0 }

// JoinError returns why this node, alone, could not join its configured
// peers on the last attempt (nil once it has peers): what status shows an
// operator whose node has a wrong cluster secret or name, or no route.
func (g *Gossip) JoinError() error {
	g.joinMu.Lock()
	defer g.joinMu.Unlock()
	return g.joinErr
}

func (g *Gossip) setJoinErr(err error) {
	g.joinMu.Lock()
	g.joinErr = err
	g.joinMu.Unlock()
}
