package pki

import (
	"crypto/x509"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// epoch is the fixed "now" of most tests.
func epoch() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

// clock is a settable Options.Now.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func testNode() Node {
	return Node{
		Name:          "cp-1",
		AdvertiseIP:   netip.MustParseAddr("10.0.0.10"),
		ServiceIP:     netip.MustParseAddr("10.96.0.1"),
		ClusterDomain: "cluster.local",
		ExtraSANs:     []string{"api.example.com", "192.0.2.7"},
	}
}

// newTestStore returns a store over a fresh temporary root, with the clock
// at t0 and the given key algorithm.
func newTestStore(t testing.TB, alg string) (*Store, *hostfs.Root, *clock) {
	t.Helper()
	root, err := hostfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: epoch()}
	return NewStore(root, Options{KeyAlgorithm: alg, Now: c.Now}), root, c
}

// setUp creates a control-plane PKI for testNode.
func setUp(t testing.TB, alg string) (*Store, *hostfs.Root, *clock) {
	t.Helper()
	s, root, c := newTestStore(t, alg)
	if _, err := EnsureControlPlane(s, testNode()); err != nil {
		t.Fatal(err)
	}
	return s, root, c
}

func readFile(t testing.TB, root *hostfs.Root, logical string) []byte {
	t.Helper()
	data, err := root.ReadFile(logical)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t testing.TB, root *hostfs.Root, logical string, data []byte, mode fs.FileMode) {
	t.Helper()
	if _, err := root.WriteFile(logical, data, mode); err != nil {
		t.Fatal(err)
	}
}

func loadCert(t testing.TB, root *hostfs.Root, name string) *x509.Certificate {
	t.Helper()
	c, err := parseCertPEM(readFile(t, root, CertPath(name)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

// fileState is a file's content, mode and mtime.
type fileState struct {
	data  string
	mode  fs.FileMode
	mtime time.Time
}

// snapshot records every file under the root's PKI directory.
func snapshot(t testing.TB, root *hostfs.Root) map[string]fileState {
	t.Helper()
	out := make(map[string]fileState)
	base := root.Path(Dir)
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		out[rel] = fileState{string(data), fi.Mode(), fi.ModTime()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameFiles fails unless two snapshots hold the same files with the same
// bytes, modes and mtimes.
func sameFiles(t testing.TB, before, after map[string]fileState) {
	t.Helper()
	if len(before) != len(after) {
		t.Errorf("file count changed: %d → %d", len(before), len(after))
	}
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("%s: removed", name)
		case a.data != b.data:
			t.Errorf("%s: content changed", name)
		case a.mode != b.mode:
			t.Errorf("%s: mode changed %v → %v", name, b.mode, a.mode)
		case !a.mtime.Equal(b.mtime):
			t.Errorf("%s: mtime changed", name)
		}
	}
}

func outcomesByName(outs []Outcome) map[string]Outcome {
	m := make(map[string]Outcome, len(outs))
	for _, o := range outs {
		m[o.Name] = o
	}
	return m
}
