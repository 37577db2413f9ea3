package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const claim = "pvc-0b7a4c1e-3f1d-4c2a-9e8b-1234567890ab_ecommerce_data-postgresql-0"

func TestCreateAndDelete(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, claim)
	if err := run([]string{"-p", vol, "-s", "1073741824", "-m", "Filesystem", "-a", "create"}, dir, io.Discard); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(vol)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o777 {
		t.Fatalf("after create: %v %v", fi, err)
	}
	// A retried create of the same volume succeeds.
	if err := run([]string{"-p", vol, "-a", "create"}, dir, io.Discard); err != nil {
		t.Fatalf("second create: %v", err)
	}
	if err := os.WriteFile(filepath.Join(vol, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-p", vol, "-a", "delete"}, dir, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(vol); !os.IsNotExist(err) {
		t.Fatalf("after delete: %v", err)
	}
	// A retried delete of a volume already gone succeeds.
	if err := run([]string{"-p", vol, "-a", "delete"}, dir, io.Discard); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestRefusesWhatItDidNotCreate(t *testing.T) {
	dir := t.TempDir()
	storage := filepath.Join(dir, "storage")
	if err := os.Mkdir(storage, 0o755); err != nil {
		t.Fatal(err)
	}
	// Something of the operator's beside the storage directory.
	keep := filepath.Join(dir, "etc")
	if err := os.Mkdir(keep, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"traversal out of the storage directory", filepath.Join(storage, "..", "etc"), "directly under"},
		{"cleaned traversal", keep, "directly under"},
		{"nested under a volume", filepath.Join(storage, claim, "x"), "directly under"},
		{"not the provisioner's name", filepath.Join(storage, "lost+found"), "not a volume"},
		{"the storage directory itself", storage, "directly under"},
		{"relative", claim, "directly under"},
		{"empty", "", "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, a := range []string{"create", "delete"} {
				err := run([]string{"-p", tc.path, "-a", a}, storage, io.Discard)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s %q: %v, want an error with %q", a, tc.path, err, tc.want)
				}
			}
		})
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("the operator's directory is gone: %v", err)
	}
}

func TestRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	vol := filepath.Join(dir, claim)
	for _, tc := range []struct {
		args    []string
		storage string
		want    string
	}{
		{[]string{"-p", vol, "-a", "create", "-m", "Block"}, dir, "only Filesystem"},
		{[]string{"-p", vol, "-a", "resize"}, dir, "want create or delete"},
		{[]string{"-p", vol, "-a", "create"}, "", "$STORAGE_DIR"},
		{[]string{"-p", vol, "-a", "create"}, "relative/dir", "$STORAGE_DIR"},
		{[]string{"-p", vol, "-a", "create", "extra"}, dir, "unexpected"},
	} {
		if err := run(tc.args, tc.storage, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q with STORAGE_DIR %q: %v, want %q", tc.args, tc.storage, err, tc.want)
		}
	}
	// A file where the volume should be is not replaced or deleted.
	if err := os.WriteFile(vol, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-p", vol, "-a", "create"}, dir, io.Discard); err == nil {
		t.Error("create over a file succeeded")
	}
	if err := run([]string{"-p", vol, "-a", "delete"}, dir, io.Discard); err == nil {
		t.Error("delete of a file succeeded")
	}
	if _, err := os.Stat(vol); err != nil {
		t.Fatalf("the file is gone: %v", err)
	}
}
