//go:build e2e

package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// vipConfig is the [control_plane_vip] table of a cluster with vip.
func vipConfig(vip netip.Addr) string {
	return fmt.Sprintf("\n[control_plane_vip]\naddress = %q\n", vip)
}

// vipHolders are the hosts with vip on an interface, as `ip` says.
func vipHolders(hosts []*testhost.Host, vip netip.Addr) ([]*testhost.Host, error) {
	var holders []*testhost.Host
	for _, h := range hosts {
		res, err := run(h, "ip", "-o", "-4", "addr", "show", "to", vip.String()+"/32")
		if err != nil {
			return nil, fmt.Errorf("%s: ip addr: %v: %s", h.Name(), err, res.Stderr)
		}
		if strings.TrimSpace(res.Stdout) != "" {
			holders = append(holders, h)
		}
	}
	return holders, nil
}

// oneVIPHolder waits until exactly one of hosts holds vip and every one
// of them names it in its status; it returns the holder.
func oneVIPHolder(t *testing.T, hosts []*testhost.Host, vip netip.Addr) *testhost.Host {
	t.Helper()
	var holder *testhost.Host
	await(t, 2*time.Minute, "exactly one host holding the VIP, named by every status", func() error {
		holders, err := vipHolders(hosts, vip)
		if err != nil {
			return err
		}
		if len(holders) != 1 {
			return fmt.Errorf("%d hosts hold %s", len(holders), vip)
		}
		holder = holders[0]
		for _, h := range hosts {
			st, _ := statusJSON(t, h)
			if st.VIP == nil || st.VIP.Holder != holder.Name() || st.VIP.Held != (h == holder) {
				return fmt.Errorf("%s's status: %+v", h.Name(), st.VIP)
			}
		}
		return nil
	})
	return holder
}

// testVIP: the agents of hosts hold vip, one at a time. kubectl on this
// machine reaches the API through it with a kubeconfig exported for it;
// when the holder's cable is pulled, and when its agent stops, another
// host takes the address and kubectl works again within seconds (the
// figures are logged). The old holder, back, holds nothing.
func testVIP(t *testing.T, hosts []*testhost.Host, vip netip.Addr) {
	holder := oneVIPHolder(t, hosts, vip)
	table, _ := run(holder, "ecom-agent", "status")
	if !strings.Contains(table.Stdout, "VIP             "+vip.String()+" held here on eth0") {
		t.Errorf("%s's status does not show the VIP held:\n%s", holder.Name(), table.Stdout)
	}

	server := "https://" + vip.String() + ":6443"
	res, err := run(hosts[0], "ecom-agent", "kubeconfig", "--user", "e2e-vip", "--server", server, "--ttl", "1h")
	if err != nil {
		t.Fatalf("ecom-agent kubeconfig --server %s: %v\n%s", server, err, res.Stderr)
	}
	kubeconfig := filepath.Join(t.TempDir(), "vip.conf")
	if err := os.WriteFile(kubeconfig, []byte(res.Stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	// readyz asks the API through the VIP from this machine, with the
	// certificate checked for the VIP's address.
	readyz := func(timeout string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, filepath.Join(kubeBins(t), "kubectl"), "--kubeconfig", kubeconfig,
			"--request-timeout="+timeout, "get", "--raw", "/readyz").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			return fmt.Errorf("kubectl through %s: %v: %s", vip, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := readyz("10s"); err != nil {
		t.Fatal(err)
	}

	// failover waits until a host other than old holds the VIP and the
	// API answers through it, and returns how long that took from start.
	failover := func(old *testhost.Host, start time.Time) (*testhost.Host, time.Duration) {
		var rest []*testhost.Host
		for _, h := range hosts {
			if h != old {
				rest = append(rest, h)
			}
		}
		var next *testhost.Host
		await(t, time.Minute, "another host holding the VIP and the API answering through it", func() error {
			holders, err := vipHolders(rest, vip)
			if err != nil {
				return err
			}
			if len(holders) != 1 {
				return fmt.Errorf("%d of the other hosts hold %s", len(holders), vip)
			}
			next = holders[0]
			return readyz("2s")
		})
		return next, time.Since(start)
	}

	t.Run("the holder's cable pulled", func(t *testing.T) {
		start := time.Now()
		if err := holder.Disconnect(); err != nil {
			t.Fatal(err)
		}
		next, took := failover(holder, start)
		t.Logf("VIP failover after %s's cable was pulled: %s held it, the API answered through it after %.1f s", holder.Name(), next.Name(), took.Seconds())
		if err := holder.Reconnect(); err != nil {
			t.Fatal(err)
		}
		// The old holder, back, must not take the VIP back. The new
		// holder keeps it unless its own API server stops answering
		// (a member that rejoined in the reset subtest may still be
		// catching up): the VIP then moves on, as it should; said, not
		// failed.
		switch got := oneVIPHolder(t, hosts, vip); {
		case got == holder:
			t.Errorf("the VIP went back to %s when it came back; the agents said:\n%s", holder.Name(), vipJournals(hosts))
		case got != next:
			t.Logf("the VIP moved on from %s to %s after %s came back; the agents said:\n%s", next.Name(), got.Name(), holder.Name(), vipJournals(hosts))
			next = got
		}
		holder = next
	})

	t.Run("the holder's agent stopped", func(t *testing.T) {
		start := time.Now()
		holder.MustRun(t, "systemctl", "stop", "ecom-agent")
		next, took := failover(holder, start)
		t.Logf("VIP failover after %s's agent stopped: %s held it, the API answered through it after %.1f s", holder.Name(), next.Name(), took.Seconds())
		// What on-call sees (the README shows it).
		journal := next.MustRun(t, "journalctl", "-u", "ecom-agent.service", "--no-pager", "-o", "short-iso", "--grep", "VIP")
		res, _ := run(next, "ecom-agent", "status")
		for _, l := range strings.Split(res.Stdout, "\n") {
			if strings.HasPrefix(l, "VIP ") {
				t.Logf("%s# ecom-agent status | grep VIP\n%s\n%s# journalctl -u ecom-agent --grep VIP\n%s", next.Name(), l, next.Name(), journal)
			}
		}
		holder.MustRun(t, "systemctl", "start", "ecom-agent")
		switch got := oneVIPHolder(t, hosts, vip); {
		case got == holder:
			t.Errorf("the VIP went back to %s when its agent started again; the agents said:\n%s", holder.Name(), vipJournals(hosts))
		case got != next:
			t.Logf("the VIP moved on from %s to %s after %s's agent started again; the agents said:\n%s", next.Name(), got.Name(), holder.Name(), vipJournals(hosts))
		}
	})
}

// vipJournals are the agents' journal lines about the VIP and their API
// servers' readiness, host by host: why the VIP moved.
func vipJournals(hosts []*testhost.Host) string {
	var b strings.Builder
	for _, h := range hosts {
		res, _ := run(h, "journalctl", "-u", "ecom-agent.service", "--no-pager", "-o", "short-precise",
			"--grep", "VIP|kube-apiserver is")
		fmt.Fprintf(&b, "%s:\n%s\n", h.Name(), res.Stdout)
	}
	return b.String()
}
