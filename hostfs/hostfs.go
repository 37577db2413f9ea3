// Package hostfs is the single door through which ecom-agent touches a host's
// filesystem. Code names logical paths ("/etc/kubernetes/pki/ca.crt"); a Root
// resolves them under a prefix, so the daemon uses "/" while `render --root`,
// unit tests and the test hosts use another directory.
//
// Every write is atomic (temporary file, fsync, rename, fsync of the
// directory) and does nothing when the file already has the wanted content
// and mode, so re-running a phase leaves bytes and mtimes alone.
package hostfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Root is a host filesystem rooted at a directory.
type Root struct {
	dir string
}

// New returns a Root at dir. dir must be absolute.
func New(dir string) (*Root, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("host root %q: must be an absolute path", dir)
	}
	return &Root{dir: filepath.Clean(dir)}, nil
}

// Dir returns the directory the root is at ("/" for the real host).
func (r *Root) Dir() string { return r.dir }

// Path resolves a logical absolute path to the real path under the root.
// Logical paths must be absolute and may not climb out with "..".
func (r *Root) Path(logical string) string {
	if !filepath.IsAbs(logical) {
		panic(fmt.Sprintf("hostfs: logical path %q is not absolute", logical))
	}
	return filepath.Join(r.dir, filepath.Clean(logical))
}

// Result says what a write did.
type Result int

const (
	// Unchanged means the file already had the content and mode.
	Unchanged Result = iota
	// Created means the file did not exist before.
	Created
	// Updated means the file existed with other content or mode.
	Updated
)

func (r Result) String() string {
	switch r {
	case Created:
		return "created"
	case Updated:
		return "updated"
	default:
		return "unchanged"
	}
}

// WriteFile atomically writes data to the logical path with the given mode,
// creating parent directories with mode 0755 where missing. A file that
// already holds data with that mode is not touched.
func (r *Root) WriteFile(logical string, data []byte, mode fs.FileMode) (Result, error) {
	return r.WriteFileDirMode(logical, data, mode, 0o755)
}

// WriteFileDirMode is WriteFile with the mode for missing parent directories.
func (r *Root) WriteFileDirMode(logical string, data []byte, mode, dirMode fs.FileMode) (Result, error) {
	p := r.Path(logical)
	result := Created
	if fi, err := os.Lstat(p); err == nil {
		if !fi.Mode().IsRegular() {
			return Unchanged, fmt.Errorf("write %s: exists and is not a regular file (%s)", logical, fi.Mode().Type())
		}
		old, err := os.ReadFile(p)
		if err != nil {
			return Unchanged, fmt.Errorf("write %s: read existing: %w", logical, err)
		}
		if bytes.Equal(old, data) && fi.Mode().Perm() == mode.Perm() {
			return Unchanged, nil
		}
		result = Updated
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Unchanged, fmt.Errorf("write %s: %w", logical, err)
	}
	if err := r.mkdirAll(filepath.Dir(logical), dirMode); err != nil {
		return Unchanged, fmt.Errorf("write %s: %w", logical, err)
	}
	if err := writeAtomic(p, data, mode); err != nil {
		return Unchanged, fmt.Errorf("write %s: %w", logical, err)
	}
	return result, nil
}

// writeAtomic writes data next to path and renames it into place, so a
// reader or a crash sees either the old file or the new one, never a part.
func writeAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file 0600, so secrets are never readable while
	// they are being written; the final mode is set before the rename.
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(mode.Perm()); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

// MkdirAll creates the logical directory and missing parents with mode,
// and sets mode on the directory itself if it exists with another one.
func (r *Root) MkdirAll(logical string, mode fs.FileMode) error {
	if err := r.mkdirAll(logical, mode); err != nil {
		return err
	}
	p := r.Path(logical)
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != mode.Perm() {
		return os.Chmod(p, mode.Perm())
	}
	return nil
}

func (r *Root) mkdirAll(logical string, mode fs.FileMode) error {
	p := r.Path(logical)
	if err := os.MkdirAll(p, mode); err != nil {
		return fmt.Errorf("create directory %s: %w", logical, err)
	}
	return nil
}

// ReadFile reads a logical path.
func (r *Root) ReadFile(logical string) ([]byte, error) {
	return os.ReadFile(r.Path(logical))
}

// ReadDir lists a logical directory, sorted by name.
func (r *Root) ReadDir(logical string) ([]fs.DirEntry, error) {
	return os.ReadDir(r.Path(logical))
}

// Stat stats a logical path.
func (r *Root) Stat(logical string) (fs.FileInfo, error) {
	return os.Stat(r.Path(logical))
}

// Exists reports whether the logical path exists.
func (r *Root) Exists(logical string) (bool, error) {
	_, err := os.Lstat(r.Path(logical))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// Remove removes a logical file; a missing file is not an error.
// It reports whether something was removed.
func (r *Root) Remove(logical string) (bool, error) {
	err := os.Remove(r.Path(logical))
	if err == nil {
		return true, syncDir(filepath.Dir(r.Path(logical)))
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// RemoveAll removes a logical directory tree; refuses "/" so that a bad
// path can never wipe the host.
func (r *Root) RemoveAll(logical string) error {
	clean := filepath.Clean(logical)
	if clean == "/" || strings.Count(clean, "/") < 2 && !strings.HasPrefix(clean, "/tmp") {
		return fmt.Errorf("refusing to remove %s: too close to the root", logical)
	}
	return os.RemoveAll(r.Path(clean))
}

// Rename atomically renames a logical path to another.
func (r *Root) Rename(from, to string) error {
	if err := os.Rename(r.Path(from), r.Path(to)); err != nil {
		return err
	}
	return syncDir(filepath.Dir(r.Path(to)))
}
