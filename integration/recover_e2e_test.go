//go:build e2e

package integration

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// TestRecover: three control-plane hosts; `etcd recover` refuses while a
// quorum answers; two hosts are lost (agent and etcd stopped, one's data
// removed, the other's kept), and recover on the third makes its etcd a one-member
// cluster from its own data (an object written before the loss is still
// there); the two agents, started again, find the cluster no longer lists
// them and join as new members, until three voters serve again. Then a
// snapshot of it restores on a fresh host (restoreOnFreshHost).
func TestRecover(t *testing.T) {
	env := testhost.New(t, hostOptions(t, "r"))
	hosts := env.Start(t, 3)
	// Keeping two scheduled snapshots; every host holds three older ones
	// already, which its first scheduled snapshot rotates out but the
	// newest. The hosts take theirs one at a time (the one that misses
	// the cluster-wide lock tries again 5 minutes later): the first to
	// take one shows the rotation.
	onEach(hosts, func(h *testhost.Host) {
		install(t, h, joinConfig(h, hosts, 3)+"[etcd.snapshots]\nretention = 2\n")
	})
	survivor, lost := hosts[0], hosts[1:]
	old := map[*testhost.Host][]string{}
	for _, h := range hosts {
		old[h] = oldScheduledSnapshots(t, h, 3)
	}
	joinEach(t, hosts)
	await(t, 3*time.Minute, "a host's scheduled snapshots rotated", func() error {
		var errs []error
		for _, h := range hosts {
			err := rotated(h, old[h][len(old[h])-1])
			if err == nil {
				return nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", h.Name(), err))
		}
		return errors.Join(errs...)
	})
	if out, err := kubectl(survivor, "create", "configmap", "before-loss", "--from-literal=written=before"); err != nil {
		t.Fatalf("create the configmap: %v\n%s", err, out)
	}

	res, err := run(survivor, "ecom-agent", "etcd", "recover", "--yes")
	if err == nil || res.ExitCode != 6 || !strings.Contains(res.Stderr, "the etcd cluster has a quorum") {
		t.Fatalf("recover with a quorum: exit %d, %v\n%s%s", res.ExitCode, err, res.Stdout, res.Stderr)
	}

	// Both lost hosts stop; the first also loses its data, the second
	// comes back with its data of the old cluster (a host that was only
	// powered off): etcd's removed-member fencing stops it, and its agent
	// sets that data aside.
	onEach(lost, func(h *testhost.Host) {
		h.MustRun(t, "systemctl", "stop", "ecom-agent.service", "etcd.service")
	})
	lost[0].MustRun(t, "rm", "-rf", "/var/lib/etcd/member")
	start := time.Now()
	res, err = run(survivor, "ecom-agent", "etcd", "recover", "--yes")
	if err != nil || !strings.HasPrefix(res.Stdout, "recovered: "+survivor.Name()) {
		t.Fatalf("recover: %v\n%s%s", err, res.Stdout, res.Stderr)
	}
	t.Logf("recover took %.1fs:\n%s", time.Since(start).Seconds(), res.Stdout)
	if res, _ := run(survivor, "sh", "-c", "ls -d /var/lib/etcd.recover-*/member/wal"); res.ExitCode != 0 {
		t.Errorf("no copy of the data before the recover: %s", res.Stderr)
	}
	await(t, 3*time.Minute, "the configmap written before the loss, through "+survivor.Name(), func() error {
		out, err := kubectl(survivor, "get", "configmap", "before-loss", "-o", "jsonpath={.data.written}")
		if err != nil || out != "before" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	onEach(lost, func(h *testhost.Host) { h.MustRun(t, "systemctl", "start", "ecom-agent.service") })
	await(t, 8*time.Minute, "three voters again", func() error {
		_, voters, learners, err := formed(t, survivor)
		if err != nil {
			return err
		}
		if voters != 3 || learners != 0 {
			return fmt.Errorf("%d voters, %d learners", voters, learners)
		}
		return nil
	})
	if res, _ := run(lost[1], "sh", "-c", "ls -d /var/lib/etcd.aside-*/member/wal"); res.ExitCode != 0 {
		t.Errorf("%s's data of the old cluster was not set aside: %s", lost[1].Name(), res.Stderr)
	}
	for _, h := range lost {
		await(t, 3*time.Minute, "the configmap through "+h.Name(), func() error {
			out, err := kubectl(h, "get", "configmap", "before-loss", "-o", "jsonpath={.data.written}")
			if err != nil || out != "before" {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}
	restoreOnFreshHost(t, env, survivor)
}
