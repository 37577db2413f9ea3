package deb

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
)

// binariesPackage is the shape both companion packages share: prebuilt
// programs in /usr/bin, the copyright and lintian overrides from
// files/NAME/, and a changelog generated from the pinned version.
type binariesPackage struct {
	name     string
	binaries []string
	binDir   string
	// build is the script that builds the binaries, named when one is
	// missing.
	build     string
	changelog []string
	// conffiles are files of files/ shipped as conffiles: source
	// (relative to files/) and destination.
	conffiles [][2]string
}

// info stages the package's files under c and returns its nfpm
// description without the package-specific fields.
func (p binariesPackage) info(c Common) (*nfpm.Info, error) {
	s := &stager{dir: c.Staging, mtime: c.MTime}
	for _, b := range p.binaries {
		src, err := filepath.Abs(filepath.Join(p.binDir, b))
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("%s: %w (run %s)", p.name, err, p.build)
		}
		s.add(src, "/usr/bin/"+b, 0o755, files.TypeFile)
	}
	doc := "/usr/share/doc/" + p.name + "/"
	for _, f := range []struct{ src, dst string }{
		{p.name + "/copyright", doc + "copyright"},
		{p.name + "/lintian-overrides", "/usr/share/lintian/overrides/" + p.name},
	} {
		if err := s.addStatic(f.src, f.dst, 0o644, files.TypeFile); err != nil {
			return nil, err
		}
	}
	for _, f := range p.conffiles {
		if err := s.addStatic(f[0], f[1], 0o644, files.TypeConfig); err != nil {
			return nil, err
		}
	}
	cl, err := gz(changelog(p.name, c.Version, c.Maintainer, p.changelog, c.MTime))
	if err != nil {
		return nil, err
	}
	if err := s.addData(doc+"changelog.Debian.gz", cl, 0o644, files.TypeFile); err != nil {
		return nil, err
	}
	info := baseInfo(c, p.name)
	info.License = "Apache-2.0"
	info.Contents = s.contents
	return info, nil
}
