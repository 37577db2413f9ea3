package gossip

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestSplitJoinAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port uint16
	}{
		{"10.0.0.12", "10.0.0.12", 7946},
		{"10.0.0.12:8000", "10.0.0.12", 8000},
		{"[fd00::1]", "fd00::1", 7946},
		{"[fd00::1]:8000", "fd00::1", 8000},
		{"fd00::1", "fd00::1", 7946},
		{"cp-1.example.com", "cp-1.example.com", 7946},
		{"cp-1.example.com:8000", "cp-1.example.com", 8000},
	} {
		host, port, err := splitJoinAddr(tc.in, 7946)
		if err != nil || host != tc.host || port != tc.port {
			t.Errorf("splitJoinAddr(%q) = %q, %d, %v; want %q, %d", tc.in, host, port, err, tc.host, tc.port)
		}
	}
	for _, bad := range []string{"10.0.0.12:0", "10.0.0.12:70000", "host:port", "a:b:c"} {
		if _, _, err := splitJoinAddr(bad, 7946); err == nil {
			t.Errorf("splitJoinAddr(%q) accepted it", bad)
		}
	}
}

func TestTargetsSkipThisNode(t *testing.T) {
	g := &Gossip{
		cfg:  Config{Port: 7946},
		addr: netip.MustParseAddrPort("10.0.0.11:7946"),
	}
	jt := g.targets(t.Context(), []string{"10.0.0.11", "10.0.0.12", "10.0.0.12:7946", "10.0.0.11:8000", "bad:port"})
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.12:7946"), netip.MustParseAddrPort("10.0.0.11:8000")}
	if !slices.Equal(jt.others, want) || !jt.self || len(jt.errs) != 1 {
		t.Errorf("targets = %v, self %v, %v; want %v, self, and one error", jt.others, jt.self, jt.errs, want)
	}
}

// Run keeps the configured join addresses as it resolved them: the
// quorum's anchors.
func TestJoinTargets(t *testing.T) {
	t.Parallel()
	ports := freePorts(t, 2)
	a := mustStart(t, testConfig("a", ports[0], addrOf(ports[1]), addrOf(ports[0])))
	waitFor(t, "the join targets resolved", func() error {
		others, self, ok := a.JoinTargets()
		want := []netip.AddrPort{netip.MustParseAddrPort(addrOf(ports[1]))}
		if !ok || !self || !slices.Equal(others, want) {
			return fmt.Errorf("JoinTargets = %v, self %v, ok %v; want %v, self, ok", others, self, ok, want)
		}
		return nil
	})
	b := mustStart(t, testConfig("b", 0, "no-such-host.invalid"))
	if _, _, ok := b.JoinTargets(); ok {
		t.Error("JoinTargets is ok with an address that does not resolve")
	}
}

func TestUnreachable(t *testing.T) {
	for msg, want := range map[string]bool{
		"dial tcp 10.0.0.12:7946: connect: connection refused": true,
		"dial tcp 10.0.0.12:7946: i/o timeout":                 true,
		"cp-9: cannot resolve: lookup cp-9: no such host":      true,
		"EOF": false,
		"no installed keys could decrypt the message": false,
	} {
		if got := unreachable(errors.New(msg)); got != want {
			t.Errorf("unreachable(%q) = %v, want %v", msg, got, want)
		}
	}
}

func TestJoinNobodyReachable(t *testing.T) {
	t.Parallel()
	a := mustStart(t, testConfig("a", 0))
	port := freePorts(t, 1)[0]
	err := a.Join(t.Context(), []string{addrOf(port), a.Addr().String()})
	if !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrNotAccepted) {
		t.Errorf("Join = %v, want %v", err, ErrUnreachable)
	}
	if err := a.Join(t.Context(), []string{a.Addr().String()}); err != nil {
		t.Errorf("Join of only ourselves = %v, want nil", err)
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	for i, d := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		d *= time.Millisecond
		if got := b.next(); got < d/2 || got > d {
			t.Errorf("wait %d = %s, want within [%s, %s]", i, got, d/2, d)
		}
	}
	for range 100 {
		b.next() // no overflow however long it runs
	}
	if got := b.next(); got < 500*time.Millisecond || got > time.Second {
		t.Errorf("wait after many = %s", got)
	}
	b.reset()
	if got := b.next(); got > 100*time.Millisecond {
		t.Errorf("wait after reset = %s", got)
	}
}
