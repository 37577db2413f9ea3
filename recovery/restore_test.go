package recovery

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/clusterkeys"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/internal/etcdtest"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/snapshot"
)

// takeSnapshot saves a snapshot of a real etcd holding one object and,
// unless sealed is nil, the cluster keys sealed.
func takeSnapshot(t *testing.T, sealed []byte) string {
	t.Helper()
	cli := etcdtest.Start(t)
	ctx := context.Background()
	if _, err := cli.Put(ctx, "/registry/configmaps/default/before", "written before"); err != nil {
		t.Fatal(err)
	}
	info := snapshot.Info{Now: time.Now()}
	if sealed != nil {
		info.Carry = map[string][]byte{clusterkeys.EtcdKey: sealed}
	}
	path := filepath.Join(t.TempDir(), "s.db")
	if _, err := snapshot.Save(ctx, cli, cli.Endpoints()[0], path, info); err != nil {
		t.Fatal(err)
	}
	return path
}

func sealedKeys(t *testing.T, cfg *config.Config) []byte {
	t.Helper()
	shared, err := clusterkeys.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := shared.Seal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}

// A restore on a fresh node installs the snapshot's keys, puts its data
// in place with the revision bumped, records the one-member cluster and
// starts the agent.
func TestRestoreOnAFreshNode(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	sealed := sealedKeys(t, cfg)
	path := takeSnapshot(t, sealed)
	meta, err := snapshot.Verify(path)
	if err != nil {
		t.Fatal(err)
	}
	root := configtest.Root(t)
	sd := &systemd{}
	rep, err := Restore(context.Background(), RestoreOptions{Options: Options{Config: cfg, Root: root, Systemd: sd}, Snapshot: path})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Keys != "snapshot" || rep.Revision != meta.Revision || rep.ClusterID == "" || rep.MemberID == "" || rep.Backup != "" {
		t.Errorf("report %+v", rep)
	}
	if !slices.Equal(sd.calls, []string{"start " + bootstrap.AgentUnit}) {
		t.Errorf("systemd calls %v (units not loaded on a fresh node are not stopped)", sd.calls)
	}
	if fi, err := os.Stat(root.Path(bootstrap.EtcdDataDir)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir: %v %v", fi, err)
	}
	db := root.Path(bootstrap.EtcdDataDir + "/member/snap/db")
	if v, found, err := snapshot.ReadKey(db, "/registry/configmaps/default/before"); err != nil || !found || string(v) != "written before" {
		t.Errorf("restored object: %q %v %v", v, found, err)
	}
	if st, err := etcdutl.NewV3(zap.NewNop()).Status(db); err != nil || st.Revision < meta.Revision+RevisionBump {
		t.Errorf("restored revision %d, want at least %d (%v)", st.Revision, meta.Revision+RevisionBump, err)
	}
	st, err := nodestate.ReadState(root)
	if err != nil || st == nil || st.Etcd == nil || st.Etcd.State != bootstrap.EtcdStartExisting ||
		len(st.Etcd.Peers) != 1 || st.Etcd.Peers[cfg.NodeName] == "" || st.Etcd.Served.IsZero() {
		t.Errorf("state %+v %v", st, err)
	}
	if got, err := clusterkeys.LoadSealed(root, cfg); err != nil || string(got) != string(sealed) {
		t.Errorf("sealed keys not saved: %v", err)
	}
	for _, f := range []string{bootstrap.PKIDir + "/ca.crt", bootstrap.PKIDir + "/ca.key", bootstrap.EncryptionConfigFile} {
		if _, err := os.Stat(root.Path(f)); err != nil {
			t.Errorf("keys not installed: %v", err)
		}
	}
}

// A snapshot that does not verify, carries no keys or another cluster's
// is refused with nothing changed; --force restores with the node's own
// keys, and only when it holds some.
func TestRestoreRefuses(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	other := *cfg
	other.ClusterName = "another-shop"
	good := takeSnapshot(t, sealedKeys(t, cfg))
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(t.TempDir(), "truncated.db")
	if err := os.WriteFile(truncated, data[:len(data)-4096], 0o600); err != nil {
		t.Fatal(err)
	}
	noKeys := takeSnapshot(t, nil)
	otherKeys := takeSnapshot(t, sealedKeys(t, &other))
	for _, tc := range []struct {
		name, path string
		force      bool
		want       string
	}{
		{"truncated", truncated, false, "not a whole etcd snapshot"},
		{"no keys", noKeys, false, "carries no cluster keys"},
		{"another cluster's keys", otherKeys, false, "belongs to another cluster"},
		{"forced without keys of its own", noKeys, true, "holds no keys of its own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := configtest.Root(t)
			sd := &systemd{}
			_, err := Restore(context.Background(), RestoreOptions{Options: Options{Config: cfg, Root: root, Systemd: sd}, Snapshot: tc.path, Force: tc.force})
			var refused *RefusedError
			if !errors.As(err, &refused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v; want a refusal saying %q", err, tc.want)
			}
			if len(sd.calls) != 0 || !empty(t, root) {
				t.Errorf("something changed: systemd %v", sd.calls)
			}
		})
	}

	t.Run("forced with keys of its own", func(t *testing.T) {
		root := configtest.Root(t)
		own := sealedKeys(t, cfg)
		if err := clusterkeys.SaveSealed(root, own); err != nil {
			t.Fatal(err)
		}
		rep, err := Restore(context.Background(), RestoreOptions{Options: Options{Config: cfg, Root: root, Systemd: &systemd{}}, Snapshot: noKeys, Force: true})
		if err != nil || rep.Keys != "node" {
			t.Fatalf("%+v %v", rep, err)
		}
	})
}

// empty reports whether the root holds no file at all.
func empty(t *testing.T, root *hostfs.Root) bool {
	t.Helper()
	n := 0
	_ = filepath.WalkDir(root.Path("/"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n == 0
}
