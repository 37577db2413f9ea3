package hostfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newRoot(t *testing.T) *Root {
	t.Helper()
	r, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewRejectsRelative(t *testing.T) {
	if _, err := New("relative/dir"); err == nil {
		t.Fatal("New accepted a relative directory")
	}
}

func TestWriteFileCreatesUpdatesAndSkips(t *testing.T) {
	r := newRoot(t)
	res, err := r.WriteFile("/etc/kubernetes/pki/ca.key", []byte("one"), 0o600)
	if err != nil || res != Created {
		t.Fatalf("first write: %v %v", res, err)
	}
	fi, err := os.Stat(filepath.Join(r.Dir(), "etc/kubernetes/pki/ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	mtime := fi.ModTime()
	time.Sleep(20 * time.Millisecond) // lets a rewrite show in the mtime

	res, err = r.WriteFile("/etc/kubernetes/pki/ca.key", []byte("one"), 0o600)
	if err != nil || res != Unchanged {
		t.Fatalf("same write: %v %v", res, err)
	}
	fi, _ = r.Stat("/etc/kubernetes/pki/ca.key")
	if !fi.ModTime().Equal(mtime) {
		t.Fatal("unchanged write touched the mtime")
	}

	res, err = r.WriteFile("/etc/kubernetes/pki/ca.key", []byte("one"), 0o644)
	if err != nil || res != Updated {
		t.Fatalf("mode change: %v %v", res, err)
	}
	res, err = r.WriteFile("/etc/kubernetes/pki/ca.key", []byte("two"), 0o644)
	if err != nil || res != Updated {
		t.Fatalf("content change: %v %v", res, err)
	}
	got, _ := r.ReadFile("/etc/kubernetes/pki/ca.key")
	if string(got) != "two" {
		t.Fatalf("content %q", got)
	}
	entries, _ := os.ReadDir(filepath.Join(r.Dir(), "etc/kubernetes/pki"))
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestWriteFileRefusesNonRegular(t *testing.T) {
	r := newRoot(t)
	if err := r.MkdirAll("/etc/x", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WriteFile("/etc/x", []byte("a"), 0o644); err == nil {
		t.Fatal("wrote over a directory")
	}
}

func TestRemoveAllRefusesShallowPaths(t *testing.T) {
	r := newRoot(t)
	for _, p := range []string{"/", "/etc", "/var"} {
		if err := r.RemoveAll(p); err == nil {
			t.Errorf("RemoveAll(%q) was allowed", p)
		}
	}
	if err := r.MkdirAll("/var/lib/ecom-agent", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveAll("/var/lib/ecom-agent"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.Exists("/var/lib/ecom-agent"); ok {
		t.Fatal("directory still there")
	}
}

// TestKillDuringWrite kills a process in the middle of many atomic writes and
// checks that the file holds either a complete old or a complete new version.
func TestKillDuringWrite(t *testing.T) {
	if os.Getenv("HOSTFS_WRITER") != "" {
		r, _ := New(os.Getenv("HOSTFS_WRITER"))
		for i := 0; ; i++ {
			data := bytes.Repeat([]byte{byte('a' + i%2)}, 1<<20)
			if _, err := r.WriteFile("/data", data, 0o600); err != nil {
				os.Exit(3)
			}
		}
	}
	dir := t.TempDir()
	r, _ := New(dir)
	if _, err := r.WriteFile("/data", bytes.Repeat([]byte{'a'}, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringWrite$")
		cmd.Env = append(os.Environ(), "HOSTFS_WRITER="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(50+i*37) * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		got, err := r.ReadFile("/data")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1<<20 {
			t.Fatalf("round %d: file has %d bytes, want a whole version", i, len(got))
		}
		if first := got[0]; bytes.Count(got, []byte{first}) != len(got) {
			t.Fatalf("round %d: file mixes two versions", i)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			// A killed writer may leave its temporary file; it is never
			// the real file, and the next write of a phase ignores it.
			continue
		}
		if e.Name() != "data" {
			t.Fatalf("unexpected file %s", e.Name())
		}
	}
}
