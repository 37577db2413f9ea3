//go:build e2e

package integration

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
)

// joinConfig is a control-plane config with every host of hosts as a
// gossip join address: the same user-data on every node.
func joinConfig(h *testhost.Host, hosts []*testhost.Host, expect int) string {
	var addrs []string
	for _, o := range hosts {
		addrs = append(addrs, fmt.Sprintf("%q", o.Addr().String()))
	}
	return nodeConfig(h, expect, fmt.Sprintf("[gossip]\njoin = [%s]\n[etcd]\nreplace_dead_after = \"30s\"\n", strings.Join(addrs, ", ")))
}

// formed reports the etcd cluster a host's status shows: its ID, its
// started voters and learners.
func formed(t *testing.T, h *testhost.Host) (id string, voters, learners int, err error) {
	st, _ := statusJSON(t, h)
	if st.Etcd == nil {
		return "", 0, 0, fmt.Errorf("%s: no etcd in status (phase %s, waiting %q, etcd error %q)", h.Name(), st.Phase, st.Waiting, st.EtcdError)
	}
	for _, m := range st.Etcd.Members {
		switch {
		case m.Learner:
			learners++
		case m.Started:
			voters++
		}
	}
	return st.Etcd.ClusterID, voters, learners, nil
}

// awaitCluster waits until h's etcd serves in cluster id with 3 started
// voters.
func awaitCluster(t *testing.T, h *testhost.Host, id string, timeout time.Duration) {
	t.Helper()
	await(t, timeout, "cluster "+id+" with 3 voters on "+h.Name(), func() error {
		got, voters, _, err := formed(t, h)
		if err != nil {
			return err
		}
		if got != id || voters != 3 {
			return fmt.Errorf("cluster %s with %d voters, want %s with 3", got, voters, id)
		}
		return nil
	})
}

func startAgents(t *testing.T, hosts ...*testhost.Host) {
	t.Helper()
	onEach(hosts, func(h *testhost.Host) {
		h.MustRun(t, "systemctl", "enable", "--now", "--no-block", "ecom-agent.service")
	})
}

// onEach runs fn for every host at once and waits for all of them.
func onEach(hosts []*testhost.Host, fn func(h *testhost.Host)) {
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(h)
		}()
	}
	wg.Wait()
}

// TestQuorumFormsOnce is quorum.md's formation story on real hosts, real
// systemd and real etcd: the same config on four control-plane nodes with
// expect = 3; two alone start nothing; once all are up, exactly one
// cluster of three voters forms, with one CA, and the fourth stands by;
// restarts and a power cut of every host change nothing.
func TestQuorumFormsOnce(t *testing.T) {
	env := testhost.New(t, hostOptions(t, "q"))
	hosts := env.Start(t, 4)
	onEach(hosts, func(h *testhost.Host) { install(t, h, joinConfig(h, hosts, 3)) })

	// Case 1: two of three control-plane nodes: no etcd starts, no CA is
	// made, and status says for whom they wait.
	startAgents(t, hosts[0], hosts[1])
	for _, h := range hosts[:2] {
		await(t, time.Minute, "ecom-agent active on "+h.Name(), activeIs(h, "ecom-agent.service", "active"))
		await(t, 30*time.Second, h.Name()+" waiting for one more node", func() error {
			st, code := statusJSON(t, h)
			if code != 1 || st.Phase != nodestate.PhaseWaiting || !hasCondition(st, status.ReasonWaitForNodes) {
				return fmt.Errorf("exit %d, phase %s, waiting %q", code, st.Phase, st.Waiting)
			}
			if len(st.Gossip) != 2 {
				return fmt.Errorf("gossip view %+v, want both nodes", st.Gossip)
			}
			return nil
		})
	}
	time.Sleep(3 * time.Second)
	for _, h := range hosts[:2] {
		if res, _ := run(h, "test", "-e", "/etc/kubernetes/pki/ca.crt"); res.ExitCode == 0 {
			t.Errorf("%s made a CA while waiting for peers", h.Name())
		}
		if res, _ := run(h, "systemctl", "is-active", "etcd.service"); strings.TrimSpace(res.Stdout) == "active" {
			t.Errorf("etcd runs on %s with two of three nodes", h.Name())
		}
	}

	// Cases 2 and 3: the others arrive at once, by `ecom-agent join` as
	// cloud-init runs it; one cluster, three voters, the fourth on
	// standby. join returns 0 on all four (the standby is where the
	// fourth belongs) and says where each node ended up.
	onEach(hosts, func(h *testhost.Host) {
		ctx, cancel := ctxTimeout(4 * time.Minute)
		defer cancel()
		res, err := h.Run(ctx, "ecom-agent", "join", "--timeout", "3m")
		if err != nil || !strings.HasPrefix(res.Stdout, "joined: "+h.Name()) {
			t.Errorf("join on %s: %v\nstdout: %s\nstderr: %s", h.Name(), err, res.Stdout, res.Stderr)
			return
		}
		t.Logf("join on %s: %s", h.Name(), strings.TrimSpace(res.Stdout))
	})
	if res, _ := run(hosts[0], "ecom-agent", "join"); !strings.HasPrefix(res.Stdout, "already joined: ") || res.ExitCode != 0 {
		t.Errorf("join again: exit %d, %q", res.ExitCode, res.Stdout)
	}
	var clusterID string
	var members []*testhost.Host
	await(t, 3*time.Minute, "a 3-voter etcd cluster", func() error {
		ids := map[string][]string{}
		members = nil
		for _, h := range hosts {
			id, voters, _, err := formed(t, h)
			if err != nil {
				continue
			}
			if voters != 3 {
				return fmt.Errorf("%s sees %d started voters", h.Name(), voters)
			}
			ids[id] = append(ids[id], h.Name())
			members = append(members, h)
		}
		if len(ids) != 1 || len(members) != 3 {
			return fmt.Errorf("clusters %v", ids)
		}
		for id := range ids {
			clusterID = id
		}
		return nil
	})
	t.Logf("cluster %s formed by %d hosts", clusterID, len(members))
	var standby *testhost.Host
	for _, h := range hosts {
		if !contains(members, h) {
			standby = h
		}
	}
	await(t, time.Minute, "the fourth node on standby", func() error {
		st, _ := statusJSON(t, standby)
		if !hasCondition(st, status.ReasonStandby) {
			return fmt.Errorf("%s: phase %s, conditions %+v", standby.Name(), st.Phase, st.Conditions)
		}
		if res, _ := run(standby, "test", "-e", "/var/lib/etcd/member"); res.ExitCode == 0 {
			return fmt.Errorf("%s holds etcd data", standby.Name())
		}
		return nil
	})

	t.Run("one CA, shared by the members, unknown to the standby", func(t *testing.T) {
		var first []byte
		for _, h := range members {
			ca, err := h.ReadFile("/etc/kubernetes/pki/ca.crt")
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = ca
			} else if !bytes.Equal(first, ca) {
				t.Errorf("%s holds another cluster CA", h.Name())
			}
			mode := strings.TrimSpace(h.MustRun(t, "stat", "-c", "%a", "/etc/kubernetes/pki/ca.key", "/var/lib/ecom-agent/cluster-shared.sealed"))
			if mode != "600\n600" && mode != "600\n600\n" && strings.ReplaceAll(mode, "\n", " ") != "600 600" {
				t.Errorf("%s: key file modes %q", h.Name(), mode)
			}
		}
		// `ecom-agent members` shows the gossip view, like consul members.
		out := members[0].MustRun(t, "ecom-agent", "members")
		for _, h := range hosts {
			if !strings.Contains(out, h.Name()+" ") || strings.Count(out, "alive") != len(hosts) {
				t.Errorf("members on %s lacks %s alive:\n%s", members[0].Name(), h.Name(), out)
				break
			}
		}
		if res, _ := run(standby, "test", "-e", "/etc/kubernetes/pki/ca.key"); res.ExitCode == 0 {
			t.Errorf("standby %s holds the CA key before it is let in", standby.Name())
		}
		// Every member's etcd serves mutual TLS with the shared CA.
		for _, h := range members {
			cli := etcdOverTLS(t, h)
			ctx, cancel := ctxTimeout(10 * time.Second)
			_, err := cli.Put(ctx, "/e2e/quorum/"+h.Name(), "ok")
			cancel()
			if err != nil {
				t.Errorf("put via %s: %v", h.Name(), err)
			}
		}
	})

	t.Run("restarting every agent forms nothing new", func(t *testing.T) {
		for _, h := range hosts {
			h.MustRun(t, "systemctl", "restart", "--no-block", "ecom-agent.service")
		}
		time.Sleep(5 * time.Second)
		for _, h := range members {
			awaitCluster(t, h, clusterID, 2*time.Minute)
		}
	})

	t.Run("a power cut of every host forms nothing new", func(t *testing.T) {
		for _, h := range hosts {
			if err := h.Kill(); err != nil {
				t.Fatal(err)
			}
		}
		// The hosts come back together, as after a real power cut: a
		// member's etcd waits for its peers to regain quorum.
		onEach(hosts, func(h *testhost.Host) {
			ctx, cancel := ctxTimeout(2 * time.Minute)
			defer cancel()
			if err := h.Start(ctx); err != nil {
				t.Error(err)
			}
		})
		for _, h := range members {
			awaitCluster(t, h, clusterID, 3*time.Minute)
		}
		st, _ := statusJSON(t, standby)
		if st.Etcd != nil {
			t.Errorf("standby %s runs etcd after the power cut", standby.Name())
		}
	})

	// Case 8: a member dies for good; past replace_dead_after the standby
	// replaces it, as a learner first, then a voter.
	dead := members[2]
	alive := []*testhost.Host{members[0], members[1], standby}
	t.Run("a dead member is replaced by the standby", func(t *testing.T) {
		if err := dead.Kill(); err != nil {
			t.Fatal(err)
		}
		await(t, 3*time.Minute, "the standby promoted in place of "+dead.Name(), func() error {
			voters, learners, err := memberNames(t, members[0])
			if err != nil {
				return err
			}
			if len(voters) != 3 || len(learners) != 0 || !slices.Contains(voters, standby.Name()) || slices.Contains(voters, dead.Name()) {
				return fmt.Errorf("voters %v, learners %v", voters, learners)
			}
			return nil
		})
		for _, h := range alive {
			await(t, time.Minute, "the new membership seen by "+h.Name(), func() error {
				id, voters, _, err := formed(t, h)
				if err != nil {
					return err
				}
				if id != clusterID || voters != 3 {
					return fmt.Errorf("cluster %s with %d voters", id, voters)
				}
				return nil
			})
		}
		if ca, err := standby.ReadFile("/etc/kubernetes/pki/ca.crt"); err != nil {
			t.Error(err)
		} else if first, _ := members[0].ReadFile("/etc/kubernetes/pki/ca.crt"); !bytes.Equal(ca, first) {
			t.Error("the standby got another CA")
		}
	})

	// Case 10: the removed member comes back with its old data: etcd
	// tells it it was removed; its data goes aside (kept) and it waits
	// as the new standby.
	t.Run("the removed member comes back, sets its data aside and stands by", func(t *testing.T) {
		ctx, cancel := ctxTimeout(2 * time.Minute)
		defer cancel()
		if err := dead.Start(ctx); err != nil {
			t.Fatal(err)
		}
		await(t, 3*time.Minute, dead.Name()+" standing by with its old data aside", func() error {
			st, _ := statusJSON(t, dead)
			if !hasCondition(st, status.ReasonStandby) {
				return fmt.Errorf("phase %s, conditions %+v", st.Phase, st.Conditions)
			}
			res, _ := run(dead, "sh", "-c", "ls -d /var/lib/etcd.aside-*/member")
			if res.ExitCode != 0 {
				return fmt.Errorf("no etcd data set aside: %s", res.Stderr)
			}
			return nil
		})
		id, voters, _, err := formed(t, members[0])
		if err != nil || id != clusterID || voters != 3 {
			t.Errorf("cluster %s, %d voters, err %v", id, voters, err)
		}
	})

	// Case 9: a member's host is reinstalled (wiped disk, same name and
	// address, new node ID): its stale member is removed and it joins
	// again as a learner, then a voter.
	t.Run("a reinstalled host rejoins and its stale member is removed", func(t *testing.T) {
		h := members[1]
		oldID := ""
		st, _ := statusJSON(t, members[0])
		if st.Etcd != nil {
			for _, m := range st.Etcd.Members {
				if m.Name == h.Name() {
					oldID = m.ID
				}
			}
		}
		if oldID == "" {
			t.Fatalf("%s is not a member before the reinstall: %+v", h.Name(), st.Etcd)
		}
		if err := h.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := h.Wipe(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := ctxTimeout(2 * time.Minute)
		defer cancel()
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
		install(t, h, joinConfig(h, hosts, 3))
		if res, err := h.Run(ctx, "ecom-agent", "join", "--timeout", "90s"); err != nil {
			t.Fatalf("join after the reinstall: %v\n%s", err, res.Stderr)
		}
		await(t, 3*time.Minute, h.Name()+" a voter again under a new member ID", func() error {
			st, _ := statusJSON(t, members[0])
			if st.Etcd == nil || st.Etcd.ClusterID != clusterID {
				return fmt.Errorf("etcd %+v", st.Etcd)
			}
			voters := 0
			for _, m := range st.Etcd.Members {
				if m.ID == oldID {
					return fmt.Errorf("the stale member %s is still listed", oldID)
				}
				if m.Learner {
					return fmt.Errorf("learner %s pending", m.Name)
				}
				if m.Started {
					voters++
				}
			}
			if voters != 3 {
				return fmt.Errorf("%d started voters", voters)
			}
			// The reinstalled host is back in, as a voter (its etcd
			// ready, and its control plane perhaps already serving) or,
			// if the other standby was picked to fill the gap, as standby.
			switch hs, _ := statusJSON(t, h); hs.Phase {
			case nodestate.PhaseEtcdReady, nodestate.PhaseAPIReady, nodestate.PhaseStandby:
			default:
				return fmt.Errorf("%s: phase %s, waiting %q", h.Name(), hs.Phase, hs.Waiting)
			}
			return nil
		})
	})

	// Case 11: a node with the wrong cluster secret is refused, and both
	// sides say so.
	t.Run("a wrong cluster secret is refused, visibly on both sides", func(t *testing.T) {
		cfg := strings.Replace(joinConfig(dead, hosts, 3), testSecret, "wrong-secret-0123456789abcdef0123456789abcdef", 1)
		if err := dead.WriteFile("/etc/ecom-agent/config.toml", []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		dead.MustRun(t, "systemctl", "restart", "ecom-agent.service")
		await(t, time.Minute, dead.Name()+" saying it cannot join", func() error {
			st, code := statusJSON(t, dead)
			if code != 2 || !strings.Contains(st.GossipError, "check that cluster_secret and cluster_name match") {
				return fmt.Errorf("exit %d, gossip error %q", code, st.GossipError)
			}
			return nil
		})
		await(t, time.Minute, "a member logging the refusal", func() error {
			res, _ := run(members[0], "journalctl", "-u", "ecom-agent.service", "--no-pager", "--since", "-2min")
			if !strings.Contains(res.Stdout, "no installed keys could decrypt") {
				return fmt.Errorf("no refusal in %s's journal", members[0].Name())
			}
			return nil
		})
	})
}

// memberNames returns the names of the started voters and of the
// learners a host's etcd lists.
func memberNames(t *testing.T, h *testhost.Host) (voters, learners []string, err error) {
	st, _ := statusJSON(t, h)
	if st.Etcd == nil {
		return nil, nil, fmt.Errorf("%s: no etcd in status (%s)", h.Name(), st.EtcdError)
	}
	for _, m := range st.Etcd.Members {
		if m.Learner {
			learners = append(learners, m.Name)
		} else if m.Started {
			voters = append(voters, m.Name)
		}
	}
	return voters, learners, nil
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func contains(hs []*testhost.Host, h *testhost.Host) bool {
	for _, o := range hs {
		if o == h {
			return true
		}
	}
	return false
}
