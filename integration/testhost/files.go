package testhost

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// fileTimeout bounds copying one file to or from a host.
const fileTimeout = 5 * time.Minute

// writeScript replaces a file atomically inside a host: $1 is the path, $2
// the mode, the content comes on standard input.
const writeScript = `set -e
mkdir -p "$(dirname "$1")"
t="$1.testhost-tmp"
cat >"$t"
chmod "$2" "$t"
mv -f "$t" "$1"
`

// WriteFile writes data to the file at path on the host, replacing it
// atomically and creating its directory if needed. It works on a stopped
// host too, writing to its disk.
func (h *Host) WriteFile(path string, data []byte, mode os.FileMode) error {
	return h.writeFrom(path, bytes.NewReader(data), mode)
}

// CopyIn copies the machine's file local to path on the host, as WriteFile
// does.
func (h *Host) CopyIn(local, path string, mode os.FileMode) error {
	f, err := os.Open(local)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", h.name, err)
	}
	defer f.Close()
	return h.writeFrom(path, f, mode)
}

// ReadFile returns the content of the file at path on the host, running or
// stopped.
func (h *Host) ReadFile(path string) ([]byte, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("read %s:%s: path is not absolute", h.name, path)
	}
	if !h.Running() {
		root, err := os.OpenRoot(h.Root())
		if err != nil {
			return nil, fmt.Errorf("read %s:%s: %w", h.name, path, err)
		}
		defer root.Close()
		b, err := root.ReadFile(strings.TrimPrefix(filepath.Clean(path), "/"))
		if err != nil {
			return nil, fmt.Errorf("read %s:%s: %w", h.name, path, err)
		}
		return b, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), fileTimeout)
	defer cancel()
	res, err := h.Run(ctx, "cat", "--", path)
	if err != nil {
		return nil, fmt.Errorf("read %s:%s: %w", h.name, path, err)
	}
	return []byte(res.Stdout), nil
}

// writeFrom writes what r yields to path on the host. A running host writes
// it itself, so that the file lands where the host sees it, even under a
// file system mounted inside the host; a stopped host's disk is written
// directly.
func (h *Host) writeFrom(path string, r io.Reader, mode os.FileMode) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("write %s:%s: path is not absolute", h.name, path)
	}
	if !h.Running() {
		return h.writeDisk(path, r, mode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fileTimeout)
	defer cancel()
	cmd, err := h.Command(ctx, "/bin/sh", "-c", writeScript, "sh", path, fmt.Sprintf("%o", mode.Perm()))
	if err != nil {
		return fmt.Errorf("write %s:%s: %w", h.name, path, err)
	}
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stderr = r, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("write %s:%s: %w: %s", h.name, path, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// writeDisk writes what r yields to path on the host's disk, atomically,
// through the overlay mounted on the machine. os.Root keeps symlinks in the
// host's file system from leading the write out of it.
func (h *Host) writeDisk(path string, r io.Reader, mode os.FileMode) error {
	root, err := os.OpenRoot(h.Root())
	if err != nil {
		return fmt.Errorf("write %s:%s: %w", h.name, path, err)
	}
	defer root.Close()
	rel := strings.TrimPrefix(filepath.Clean(path), "/")
	tmp := rel + ".testhost-tmp"
	if err := root.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		return fmt.Errorf("write %s:%s: %w", h.name, path, err)
	}
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode.Perm())
	if err != nil {
		return fmt.Errorf("write %s:%s: %w", h.name, path, err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Chmod(tmp, mode.Perm()) // not narrowed by the umask
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		root.Remove(tmp)
		return fmt.Errorf("write %s:%s: %w", h.name, path, err)
	}
	return nil
}
