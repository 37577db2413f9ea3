package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/internal/etcdtest"
)

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

// A snapshot of a real etcd verifies as etcdutl reads it, carries its
// metadata, and every damaged copy is refused.
func TestSaveAndVerify(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := context.Background()
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/registry/k%02d", i), strings.Repeat("v", 100)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, Name("cp-1", t0))
	m, err := Save(ctx, cli, cli.Endpoints()[0], path, Info{Node: "cp-1", KubernetesVersion: "v1.37.2", Scheduled: true, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "etcd-snapshot-cp-1-20261206T100000Z.db" || m.Revision < 21 || m.TotalKeys < 20 || m.ClusterID == "" || m.MemberID == "" ||
		m.Node != "cp-1" || !m.Taken.Equal(t0) || !m.Scheduled || len(m.SHA256) != 64 || m.EtcdVersion == "" {
		t.Errorf("meta %+v", m)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != Mode || fi.Size() != m.Size {
		t.Errorf("file %v %v", fi, err)
	}
	if back, err := ReadMeta(path); err != nil || back != m {
		t.Errorf("meta read back %+v, %v", back, err)
	}
	if _, err := os.Stat(path + ".part"); !errors.Is(err, os.ErrNotExist) {
		t.Error("the partial file is left")
	}
	v, err := Verify(path)
	if err != nil || v.Revision != m.Revision || v.Hash != m.Hash {
		t.Errorf("verify %+v, %v", v, err)
	}

	data, _ := os.ReadFile(path)
	for name, bad := range map[string][]byte{
		"truncated":    data[:len(data)-1000],
		"a byte flips": append(append(append([]byte{}, data[:4096]...), data[4096]^0xff), data[4097:]...),
		"empty":        nil,
		"not etcd":     []byte(strings.Repeat("x", 512+32)),
	} {
		p := filepath.Join(t.TempDir(), "bad.db")
		if err := os.WriteFile(p, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(p); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Pruning keeps the newest scheduled snapshots and never touches one
// saved by hand; listing is newest first and shows files without
// metadata.
func TestListAndPrune(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, m Meta) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("db"), Mode); err != nil {
			t.Fatal(err)
		}
		m.Name = name
		if err := writeMeta(p, m); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		write(Name("cp-1", t0.Add(time.Duration(i)*time.Hour)), Meta{Node: "cp-1", Scheduled: true, Taken: t0.Add(time.Duration(i) * time.Hour)})
	}
	// Another node's, in a shared directory.
	write(Name("cp-2", t0), Meta{Node: "cp-2", Scheduled: true, Taken: t0})
	write("before-upgrade.db", Meta{Taken: t0.Add(-time.Hour)})
	if err := os.WriteFile(filepath.Join(dir, "copied.db"), []byte("db"), Mode); err != nil {
		t.Fatal(err)
	}
	// Its time is its file's: older than the others whatever day the
	// test runs on.
	if err := os.Chtimes(filepath.Join(dir, "copied.db"), t0.Add(-2*time.Hour), t0.Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	es, err := List(dir)
	if err != nil || len(es) != 8 {
		t.Fatalf("list %d, %v", len(es), err)
	}
	if es[0].Meta.Name != Name("cp-1", t0.Add(4*time.Hour)) {
		t.Errorf("newest first: %s", es[0].Meta.Name)
	}
	var orphan *Entry
	for i := range es {
		if es[i].Meta.Name == "copied.db" {
			orphan = &es[i]
		}
	}
	if orphan == nil || !strings.Contains(orphan.Problem, "no metadata") {
		t.Errorf("a file without metadata: %+v", orphan)
	}
	removed, err := Prune(dir, "cp-1", 2)
	if err != nil || len(removed) != 3 {
		t.Fatalf("pruned %d, %v", len(removed), err)
	}
	for _, r := range removed {
		if _, err := os.Stat(r.Path + ".json"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s's metadata left", r.Path)
		}
	}
	es, _ = List(dir)
	var names []string
	for _, e := range es {
		names = append(names, e.Meta.Name)
	}
	want := []string{Name("cp-1", t0.Add(4*time.Hour)), Name("cp-1", t0.Add(3*time.Hour))}
	if len(es) != 5 || names[0] != want[0] || names[1] != want[1] || !slices.Contains(names, Name("cp-2", t0)) {
		t.Errorf("left %v", names)
	}
	if es, err := List(filepath.Join(dir, "nope")); err != nil || len(es) != 0 {
		t.Errorf("a missing directory: %v %v", es, err)
	}
}
