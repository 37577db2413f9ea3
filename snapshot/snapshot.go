// Package snapshot is ecom-agent's etcd snapshots: saving one from a
// member, verifying it as etcdutl does (the SHA-256 etcd appends, then the
// bolt database's hash and revision), its metadata beside it, listing and
// pruning a directory of them. k3s's etcd-snapshot and etcdctl's snapshot
// save are the models; etcd's own client and etcdutl packages do the work.
package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// DefaultDir is where the daemon and `etcd snapshot save` put snapshots.
const DefaultDir = "/var/lib/ecom-agent/snapshots"

// Prefix starts the name of every snapshot the agent names itself.
const Prefix = "etcd-snapshot-"

// Mode is the mode of snapshot files: they hold every Secret of the
// cluster (encrypted at rest only where the API server encrypts them).
const Mode = 0o600

// Meta is what is known of a snapshot, kept in FILE.json beside FILE.
type Meta struct {
	// Name is the file's base name.
	Name string `json:"name"`
	// Cluster is the cluster's name (cluster_name in the config).
	Cluster string `json:"cluster,omitempty"`
	// Node took it, from its etcd member MemberID of cluster ClusterID
	// (hex, as etcdctl prints them).
	Node      string `json:"node"`
	ClusterID string `json:"cluster_id"`
	MemberID  string `json:"member_id"`
	// Revision, Hash, TotalKeys and Size are etcdutl's `snapshot status`
	// of the file.
	Revision  int64  `json:"revision"`
	Hash      uint32 `json:"hash"`
	TotalKeys int    `json:"total_keys"`
	Size      int64  `json:"size"`
	// SHA256 is the file's digest, for copies kept elsewhere.
	SHA256 string `json:"sha256"`
	// EtcdVersion is the member's storage version; KubernetesVersion and
	// AgentVersion are the node's.
	EtcdVersion       string    `json:"etcd_version,omitempty"`
	KubernetesVersion string    `json:"kubernetes_version,omitempty"`
	AgentVersion      string    `json:"agent_version,omitempty"`
	Taken             time.Time `json:"taken"`
	// Scheduled snapshots are the daemon's, the ones pruning removes.
	Scheduled bool `json:"scheduled"`
}

// Info is what Save records beside what it reads from etcd.
type Info struct {
	Cluster, Node, KubernetesVersion, AgentVersion string
	Scheduled                                      bool
	Now                                            time.Time
	// Carry are keys and values put in etcd (where they differ) before
	// the snapshot is taken, so that it carries them: the cluster's
	// sealed shared keys, which a restore on a new host needs.
	Carry map[string][]byte
}

// Name is the file name of a snapshot node takes at t.
func Name(node string, t time.Time) string {
	return Prefix + node + "-" + t.UTC().Format("20060102T150405Z") + ".db"
}

// Save streams a snapshot from the member at endpoint (cli must talk to
// that one member: a snapshot is one member's state) into path, verifies
// it and writes its metadata to path.json. Nothing is left at path unless
// all of that succeeded.
func Save(ctx context.Context, cli *clientv3.Client, endpoint, path string, info Info) (Meta, error) {
	st, err := cli.Status(ctx, endpoint)
	if err != nil {
		return Meta{}, fmt.Errorf("ask etcd at %s for its status: %w", endpoint, err)
	}
	for _, k := range slices.Sorted(maps.Keys(info.Carry)) {
		if err := carry(ctx, cli, k, info.Carry[k]); err != nil {
			return Meta{}, err
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return Meta{}, err
	}
	part := path + ".part"
	defer os.Remove(part)
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, Mode)
	if err != nil {
		return Meta{}, err
	}
	defer f.Close()
	resp, err := cli.SnapshotWithVersion(ctx)
	if err != nil {
		return Meta{}, fmt.Errorf("snapshot from etcd at %s: %w", endpoint, err)
	}
	defer resp.Snapshot.Close()
	if _, err := io.Copy(f, resp.Snapshot); err != nil {
		return Meta{}, fmt.Errorf("snapshot from etcd at %s: %w", endpoint, err)
	}
	if err := f.Sync(); err != nil {
		return Meta{}, err
	}
	if err := f.Close(); err != nil {
		return Meta{}, err
	}
	m, err := Verify(part)
	if err != nil {
		return Meta{}, fmt.Errorf("the snapshot etcd sent does not verify: %w", err)
	}
	m.Name = filepath.Base(path)
	m.Cluster, m.Node, m.KubernetesVersion, m.AgentVersion, m.Scheduled = info.Cluster, info.Node, info.KubernetesVersion, info.AgentVersion, info.Scheduled
	m.ClusterID = strconv.FormatUint(st.Header.ClusterId, 16)
	m.MemberID = strconv.FormatUint(st.Header.MemberId, 16)
	m.EtcdVersion = resp.Version
	m.Taken = info.Now.UTC()
	if err := os.Rename(part, path); err != nil {
		return Meta{}, err
	}
	if err := writeMeta(path, m); err != nil {
		_ = os.Remove(path)
		return Meta{}, err
	}
	return m, syncDir(filepath.Dir(path))
}

// carry puts value under key unless etcd holds exactly it already.
func carry(ctx context.Context, cli *clientv3.Client, key string, value []byte) error {
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read %s from etcd: %w", key, err)
	}
	if len(resp.Kvs) == 1 && bytes.Equal(resp.Kvs[0].Value, value) {
		return nil
	}
	if _, err := cli.Put(ctx, key, string(value)); err != nil {
		return fmt.Errorf("put %s in etcd before the snapshot: %w", key, err)
	}
	// A linearizable read through the same member: it returns once that
	// member has applied the put, so the snapshot it sends holds it.
	if _, err := cli.Get(ctx, key); err != nil {
		return fmt.Errorf("read %s back from etcd: %w", key, err)
	}
	return nil
}

// ErrCorrupt is a file that is not a whole etcd snapshot.
var ErrCorrupt = errors.New("not a whole etcd snapshot")

// Verify checks a snapshot file as `etcdutl snapshot restore` does before
// it uses one (the SHA-256 etcd appends to the database matches), then
// reads its hash, revision and keys as `etcdutl snapshot status` does.
func Verify(path string) (Meta, error) {
	f, err := os.Open(path)
	if err != nil {
		return Meta{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Meta{}, err
	}
	n := fi.Size()
	if n < sha256.Size || n%512 != sha256.Size {
		return Meta{}, fmt.Errorf("%s: %w: %d bytes, not a database with etcd's SHA-256 after it (truncated, or not a snapshot)", path, ErrCorrupt, n)
	}
	// One pass: the database's digest, and the whole file's.
	db, whole := sha256.New(), sha256.New()
	if _, err := io.CopyN(io.MultiWriter(db, whole), f, n-sha256.Size); err != nil {
		return Meta{}, err
	}
	trailer := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, trailer); err != nil {
		return Meta{}, err
	}
	whole.Write(trailer)
	if !bytes.Equal(db.Sum(nil), trailer) {
		return Meta{}, fmt.Errorf("%s: %w: its SHA-256 does not match the one etcd appended (changed or damaged)", path, ErrCorrupt)
	}
	st, err := etcdutl.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		return Meta{}, fmt.Errorf("%s: %w: %v", path, ErrCorrupt, err)
	}
	if st.Revision <= 0 {
		return Meta{}, fmt.Errorf("%s: %w: revision %d", path, ErrCorrupt, st.Revision)
	}
	return Meta{Name: filepath.Base(path), Revision: st.Revision, Hash: st.Hash, TotalKeys: st.TotalKey, Size: n,
		SHA256: hex.EncodeToString(whole.Sum(nil))}, nil
}

// ReadMeta reads the metadata beside the snapshot at path.
func ReadMeta(path string) (Meta, error) {
	data, err := os.ReadFile(path + ".json")
	if err != nil {
		return Meta{}, err
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return Meta{}, fmt.Errorf("%s.json: %w", path, err)
	}
	return m, nil
}

func writeMeta(path string, m Meta) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".json.part"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, Mode)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path+".json")
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Entry is a snapshot file of a directory with its metadata, or why it
// has none.
type Entry struct {
	Path string
	Meta Meta
	// Problem says why the metadata is missing or unreadable.
	Problem string
}

// List returns the snapshots of dir (files ending in .db), newest first;
// a missing dir holds none.
func List(dir string) ([]Entry, error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, de := range des {
		if de.IsDir() || !strings.HasSuffix(de.Name(), ".db") {
			continue
		}
		p := filepath.Join(dir, de.Name())
		e := Entry{Path: p}
		m, err := ReadMeta(p)
		if err != nil {
			e.Problem = "no metadata: " + err.Error()
			if fi, serr := de.Info(); serr == nil {
				e.Meta = Meta{Name: de.Name(), Size: fi.Size(), Taken: fi.ModTime().UTC()}
			}
		} else {
			e.Meta = m
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return b.Meta.Taken.Compare(a.Meta.Taken) })
	return out, nil
}

// Prune removes node's scheduled snapshots in dir beyond the keep newest,
// with their metadata, and returns what it removed. Snapshots an operator
// saved by hand, and other nodes' (dir may be shared storage), are never
// pruned.
func Prune(dir, node string, keep int) ([]Entry, error) {
	es, err := List(dir)
	if err != nil {
		return nil, err
	}
	var removed []Entry
	kept := 0
	for _, e := range es {
		if !e.Meta.Scheduled || e.Meta.Node != node {
			continue
		}
		if kept < keep {
			kept++
			continue
		}
		if err := os.Remove(e.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, err
		}
		_ = os.Remove(e.Path + ".json")
		removed = append(removed, e)
	}
	return removed, nil
}
