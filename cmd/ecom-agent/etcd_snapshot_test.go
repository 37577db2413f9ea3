package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/snapshot"
)

// list shows the snapshots of etcd.snapshots.dir newest first, prune
// removes the scheduled ones beyond --keep and never one saved by hand,
// and save refuses to overwrite a file or to run on a worker.
func TestEtcdSnapshotListPrune(t *testing.T) {
	cfg := writeConfig(t, testConfigTOML)
	root := t.TempDir()
	dir := filepath.Join(root, snapshot.DefaultDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	for i, m := range []snapshot.Meta{
		{Name: snapshot.Name("cp-1", t0), Node: "cp-1", Scheduled: true, Taken: t0, Revision: 10},
		{Name: snapshot.Name("cp-1", t0.Add(time.Hour)), Node: "cp-1", Scheduled: true, Taken: t0.Add(time.Hour), Revision: 20},
		{Name: "before-upgrade.db", Taken: t0.Add(-time.Hour), Revision: 5},
	} {
		p := filepath.Join(dir, m.Name)
		data, _ := json.Marshal(m)
		if os.WriteFile(p, []byte{byte(i)}, 0o600) != nil || os.WriteFile(p+".json", data, 0o600) != nil {
			t.Fatal("write fixtures")
		}
	}
	code, out, errOut := runCLI(t, "etcd", "snapshot", "list", "--config", cfg, "--root", root)
	if code != exitOK || strings.Count(out, "\n") != 4 || !strings.Contains(out, "by hand") ||
		strings.Index(out, "20261206T010000Z") > strings.Index(out, "20261206T000000Z") {
		t.Errorf("list: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "etcd", "snapshot", "prune", "--keep", "1", "--config", cfg, "--root", root)
	if code != exitOK || !strings.Contains(out, "removed "+filepath.Join(dir, snapshot.Name("cp-1", t0))) || strings.Count(out, "\n") != 1 {
		t.Errorf("prune: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "etcd", "snapshot", "list", "-o", "json", "--config", cfg, "--root", root)
	var list []snapshotJSON
	if err := json.Unmarshal([]byte(out), &list); code != exitOK || err != nil || len(list) != 2 || list[1].Name != "before-upgrade.db" {
		t.Errorf("after prune: %d %v %s", code, err, out)
	}
	if code, _, _ := runCLI(t, "etcd", "snapshot", "prune", "--keep", "0", "--config", cfg, "--root", root); code != exitUsage {
		t.Errorf("--keep 0: exit %d", code)
	}
	existing := filepath.Join(dir, "before-upgrade.db")
	if code, _, errOut := runCLI(t, "etcd", "snapshot", "save", existing, "--config", cfg, "--root", root); code != exitFailure || !strings.Contains(errOut, "exists; nothing was written") {
		t.Errorf("save over a file: exit %d %s", code, errOut)
	}
}

// restore needs one FILE and, without a terminal, --yes; it is the
// agent's command, not a flag of the etcd server.
func TestEtcdRestoreUsage(t *testing.T) {
	cfg := writeConfig(t, testConfigTOML)
	root := t.TempDir()
	if code, _, errOut := runCLI(t, "etcd", "restore", "--config", cfg, "--root", root); code != exitUsage {
		t.Errorf("no FILE: exit %d %s", code, errOut)
	}
	code, _, errOut := runCLI(t, "etcd", "restore", filepath.Join(root, "s.db"), "--config", cfg, "--root", root)
	if code != exitUsage || !strings.Contains(errOut, "pass --yes") {
		t.Errorf("no --yes without a terminal: exit %d %s", code, errOut)
	}
}
