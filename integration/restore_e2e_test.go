//go:build e2e

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// restoreOnFreshHost: a snapshot saved on a member of a serving
// cluster; an object written after it; `etcd restore` refused there
// while the quorum answers; on a fresh host of the same cluster config,
// a truncated copy is refused with nothing changed, then the snapshot
// restores as a new one-member cluster with the snapshot's keys, and its
// API server serves the objects of the snapshot's revision and not the
// one written after; a second fresh host joins it as a voter.
func restoreOnFreshHost(t *testing.T, env *testhost.Env, member *testhost.Host) {
	t.Helper()
	const file = "/root/before-restore.db"
	res := member.MustRun(t, "ecom-agent", "etcd", "snapshot", "save", file)
	t.Logf("etcd snapshot save on %s:\n%s", member.Name(), res)
	if out, err := kubectl(member, "create", "configmap", "after-snapshot", "--from-literal=written=after"); err != nil {
		t.Fatalf("create the configmap: %v\n%s", err, out)
	}
	r, err := run(member, "ecom-agent", "etcd", "restore", file, "--yes")
	if err == nil || r.ExitCode != 6 || !strings.Contains(r.Stderr, "has a quorum") {
		t.Fatalf("restore with a quorum: exit %d, %v\n%s%s", r.ExitCode, err, r.Stdout, r.Stderr)
	}
	t.Logf("etcd restore on %s with a quorum: exit %d\n%s", member.Name(), r.ExitCode, r.Stderr)
	snap, err := member.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	fresh := env.Start(t, 1)[0]
	// Its own gossip island: the same cluster's config, no peers.
	install(t, fresh, joinConfig(fresh, []*testhost.Host{fresh}, 3))
	if err := fresh.WriteFile("/root/truncated.db", snap[:len(snap)-4096], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := fresh.WriteFile(file, snap, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err = run(fresh, "ecom-agent", "etcd", "restore", "/root/truncated.db", "--yes")
	if err == nil || r.ExitCode != 6 || !strings.Contains(r.Stderr, "not a whole etcd snapshot") {
		t.Fatalf("restore of a truncated snapshot: exit %d, %v\n%s%s", r.ExitCode, err, r.Stdout, r.Stderr)
	}
	t.Logf("etcd restore of a truncated snapshot on %s: exit %d\n%s", fresh.Name(), r.ExitCode, r.Stderr)
	if r, _ := run(fresh, "test", "-e", "/var/lib/etcd"); r.ExitCode == 0 {
		t.Error("a refused restore left /var/lib/etcd")
	}

	start := time.Now()
	r, err = run(fresh, "ecom-agent", "etcd", "restore", file, "--yes")
	if err != nil || !strings.HasPrefix(r.Stdout, "restored: "+fresh.Name()) {
		t.Fatalf("restore on a fresh host: %v\n%s%s", err, r.Stdout, r.Stderr)
	}
	t.Logf("etcd restore on %s took %.1fs:\n%s%s", fresh.Name(), time.Since(start).Seconds(), r.Stderr, r.Stdout)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	if r, err := fresh.Run(ctx, "ecom-agent", "join", "--timeout", "5m"); err != nil {
		t.Fatalf("join after the restore: %v\n%s%s", err, r.Stdout, r.Stderr)
	}
	t.Logf("restore to join returned on %s: %.1fs", fresh.Name(), time.Since(start).Seconds())
	await(t, 2*time.Minute, "the snapshot's objects through "+fresh.Name(), func() error {
		out, err := kubectl(fresh, "get", "configmap", "before-loss", "-o", "jsonpath={.data.written}")
		if err != nil || out != "before" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if out, err := kubectl(fresh, "get", "configmap", "after-snapshot"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("the configmap written after the snapshot: %v %s", err, out)
	}
	// Listing Secrets decrypts each: the snapshot's encryption key is in
	// place.
	if out, err := kubectl(fresh, "get", "secrets", "-A", "-o", "name"); err != nil {
		t.Errorf("Secrets of the snapshot, decrypted with its keys: %v %s", err, out)
	} else {
		t.Logf("%d Secrets read back", len(strings.Fields(out)))
	}
	// Another fresh control-plane host joins the restored cluster, as
	// the others do after a restore.
	second := env.Start(t, 1)[0]
	install(t, second, joinConfig(second, []*testhost.Host{fresh, second}, 3))
	joinEach(t, []*testhost.Host{second})
	await(t, 5*time.Minute, "two voters in the restored cluster", func() error {
		_, voters, learners, err := formed(t, fresh)
		if err != nil {
			return err
		}
		if voters != 2 || learners != 0 {
			return fmt.Errorf("%d voters, %d learners", voters, learners)
		}
		return nil
	})
	if out, err := kubectl(second, "get", "configmap", "before-loss", "-o", "jsonpath={.data.written}"); err != nil || out != "before" {
		t.Errorf("the snapshot's objects through %s: %v %s", second.Name(), err, out)
	}

	// Degraded: the snapshot's Nodes of the old hosts are NotReady, and
	// etcd has one member of three.
	r, _ = run(fresh, "ecom-agent", "status")
	t.Logf("ecom-agent status on %s: exit %d\n%s", fresh.Name(), r.ExitCode, r.Stdout)
}

// oldScheduledSnapshots writes n scheduled snapshots of h's node, a day
// old and older, into the default snapshot directory, and returns their
// names, oldest first. Their content is no database: pruning reads only
// the metadata.
func oldScheduledSnapshots(t *testing.T, h *testhost.Host, n int) []string {
	t.Helper()
	var names []string
	for i := n; i > 0; i-- {
		taken := time.Now().UTC().Add(-time.Duration(24*i) * time.Hour)
		name := "etcd-snapshot-" + h.Name() + "-" + taken.Format("20060102T150405Z") + ".db"
		meta, _ := json.Marshal(map[string]any{"name": name, "node": h.Name(), "scheduled": true, "taken": taken})
		dir := "/var/lib/ecom-agent/snapshots/"
		if err := h.WriteFile(dir+name, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := h.WriteFile(dir+name+".json", meta, 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return names
}

// rotated reports whether h's scheduled snapshots are two: one the
// daemon took and keep, the newest of the old ones.
func rotated(h *testhost.Host, keep string) error {
	res, err := run(h, "ecom-agent", "etcd", "snapshot", "list", "-o", "json")
	if err != nil {
		return fmt.Errorf("%v: %s", err, res.Stderr)
	}
	var list []struct {
		Name      string `json:"name"`
		Scheduled bool   `json:"scheduled"`
		Revision  int64  `json:"revision"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &list); err != nil {
		return err
	}
	var names []string
	taken := false
	for _, e := range list {
		if e.Scheduled {
			names = append(names, e.Name)
			taken = taken || e.Revision > 0
		}
	}
	if len(names) != 2 || !taken || names[1] != keep {
		return fmt.Errorf("scheduled snapshots %v, want one the daemon took and %s", names, keep)
	}
	return nil
}
