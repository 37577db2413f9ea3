// Package deb builds ecom-agent's three Debian packages with nfpm used as a
// library: ecom-agent (the agent, its unit, config, man pages and
// completions) and ecom-agent-kubernetes (the pinned Kubernetes binaries).
//
// The packages are reproducible: every file, directory and archive member
// carries the same mtime (the commit time, SOURCE_DATE_EPOCH), is owned by
// root:root with a mode set here rather than taken from the disk, entries
// are sorted by nfpm, and gzip streams carry no name or timestamp. Given the
// same inputs, Build writes the same bytes.
package deb

import (
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	nfpmdeb "github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// Static text shipped in the packages: maintainer scripts, copyright files,
// lintian overrides.
//
//go:embed files
var static embed.FS

const (
	// Arch is the only architecture built.
	Arch = "amd64"
	// Homepage is the project's home.
	Homepage = "https://github.com/ecom-platform/ecom-agent"
	// DefaultMaintainer is the Maintainer field unless told otherwise.
	DefaultMaintainer = "ecom-platform maintainers <ecom-agent@ecom-platform.example>"
)

// Common holds what both packages take.
type Common struct {
	// Version is the full Debian version, with its revision (1.2.3-1).
	Version string
	// MTime is every file's and member's modification time: the commit time.
	MTime time.Time
	// Maintainer is the Maintainer field (DefaultMaintainer if empty).
	Maintainer string
	// Compression is nfpm's data.tar compression: gzip, gzip:N, xz, zstd, none.
	Compression string
	// Staging is a scratch directory for generated files; Build empties it.
	Staging string
}

func (c *Common) check() error {
	if c.Version == "" || !strings.Contains(c.Version, "-") {
		return fmt.Errorf("version %q: want a Debian version with a revision, like 1.2.3-1", c.Version)
	}
	if c.MTime.IsZero() {
		return fmt.Errorf("no mtime: set the commit time (SOURCE_DATE_EPOCH)")
	}
	if c.Staging == "" {
		return fmt.Errorf("no staging directory")
	}
	if c.Maintainer == "" {
		c.Maintainer = DefaultMaintainer
	}
	if c.Compression == "" {
		c.Compression = "gzip"
	}
	c.MTime = c.MTime.UTC()
	if err := os.RemoveAll(c.Staging); err != nil {
		return err
	}
	return os.MkdirAll(c.Staging, 0o755)
}

// FileName is the conventional name of a package file: NAME_VERSION_ARCH.deb.
func FileName(name, version string) string {
	if i := strings.IndexByte(version, ':'); i >= 0 {
		version = version[i+1:] // the epoch is not part of the file name
	}
	return fmt.Sprintf("%s_%s_%s.deb", name, version, Arch)
}

// stager writes the files of one package under its staging directory and
// collects nfpm's contents list, every entry with an explicit mode, owner
// and mtime so nothing depends on the disk or the umask.
type stager struct {
	dir      string
	mtime    time.Time
	contents files.Contents
}

func (s *stager) path(name string) string { return filepath.Join(s.dir, filepath.FromSlash(name)) }

// write puts data at staging/NAME and returns that path.
func (s *stager) write(name string, data []byte) (string, error) {
	p := s.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, data, 0o644)
}

// add ships the file at src as dst with mode.
func (s *stager) add(src, dst string, mode os.FileMode, typ string) {
	s.contents = append(s.contents, &files.Content{
		Source:      src,
		Destination: dst,
		Type:        typ,
		FileInfo:    &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: s.mtime},
	})
}

// addData stages data and ships it as dst.
func (s *stager) addData(dst string, data []byte, mode os.FileMode, typ string) error {
	src, err := s.write("root"+dst, data)
	if err != nil {
		return err
	}
	s.add(src, dst, mode, typ)
	return nil
}

// addStatic ships an embedded file.
func (s *stager) addStatic(name, dst string, mode os.FileMode, typ string) error {
	data, err := static.ReadFile("files/" + name)
	if err != nil {
		return err
	}
	return s.addData(dst, data, mode, typ)
}

// script stages an embedded maintainer script and returns its path.
func (s *stager) script(name string) (string, error) {
	data, err := static.ReadFile("files/" + name)
	if err != nil {
		return "", err
	}
	p := s.path("control/" + filepath.Base(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, data, 0o755)
}

func (s *stager) addDir(dst string) {
	s.contents = append(s.contents, &files.Content{
		Destination: dst,
		Type:        files.TypeDir,
		FileInfo:    &files.ContentFileInfo{Owner: "root", Group: "root", Mode: 0o755, MTime: s.mtime},
	})
}

// gz compresses like `gzip -9n`: best compression, no file name, no
// timestamp in the header.
func gz(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// changelog is a one-entry changelog.Debian for a package built from the
// project's tree (no hand-kept debian/changelog exists), dated with the
// commit time so it is the same on every build.
// Each of lines is one line of the entry's single item, kept under 80
// columns.
func changelog(pkg, version, maintainer string, lines []string, date time.Time) []byte {
	return []byte(fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n  * %s\n\n -- %s  %s\n",
		pkg, version, strings.Join(lines, "\n    "), maintainer,
		date.UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700")))
}

// write packages info into out with nfpm's deb packager.
func write(info *nfpm.Info, out io.Writer) error {
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return err
	}
	return nfpmdeb.Default.Package(info, out)
}

// writeFile packages info into dir/FileName and returns that path. It
// writes a temporary file first, so a failed build leaves no half package.
func writeFile(info *nfpm.Info, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, FileName(info.Name, info.Version))
	tmp, err := os.CreateTemp(dir, ".mkdeb-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := write(info, tmp); err != nil {
		tmp.Close()
		return "", fmt.Errorf("%s: %w", info.Name, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}

// baseInfo is what both packages' control files share.
func baseInfo(c Common, name string) *nfpm.Info {
	return &nfpm.Info{
		Name:          name,
		Arch:          Arch,
		Platform:      "linux",
		Version:       c.Version,
		VersionSchema: "none", // c.Version is a Debian version already
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    c.Maintainer,
		Homepage:      Homepage,
		MTime:         c.MTime,
		Overridables: nfpm.Overridables{
			Umask: 0o022,
			Deb:   nfpm.Deb{Compression: c.Compression},
		},
	}
}
