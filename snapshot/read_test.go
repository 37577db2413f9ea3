package snapshot

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ecom-platform/ecom-agent/internal/etcdtest"
)

// Save puts what it carries in etcd before the snapshot, and ReadKey
// reads a key's latest value back from the file; a deleted key is not
// found.
func TestCarryAndReadKey(t *testing.T) {
	cli := etcdtest.Start(t)
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/app/x", "first"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/app/x", "second"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/app/gone", "soon"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "/app/gone"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "s.db")
	m, err := Save(ctx, cli, cli.Endpoints()[0], path, Info{Cluster: "shop", Node: "cp-1", Now: t0,
		Carry: map[string][]byte{"/ecom-agent/carried": []byte("sealed\x00keys")}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Cluster != "shop" {
		t.Errorf("meta cluster %q", m.Cluster)
	}
	for key, want := range map[string]string{"/ecom-agent/carried": "sealed\x00keys", "/app/x": "second", "/app/gone": "", "/app/never": ""} {
		v, found, err := ReadKey(path, key)
		if err != nil || found != (want != "") || string(v) != want {
			t.Errorf("ReadKey(%s) = %q, %v, %v; want %q", key, v, found, err, want)
		}
	}
	// Carrying the same value again writes nothing.
	rev := m.Revision
	m2, err := Save(ctx, cli, cli.Endpoints()[0], filepath.Join(t.TempDir(), "s2.db"), Info{Now: t0,
		Carry: map[string][]byte{"/ecom-agent/carried": []byte("sealed\x00keys")}})
	if err != nil || m2.Revision != rev {
		t.Errorf("second save: revision %d, want %d (%v)", m2.Revision, rev, err)
	}
}
