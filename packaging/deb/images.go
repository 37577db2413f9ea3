package deb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
)

// ImagesName is the images' companion package.
const ImagesName = "ecom-agent-images"

// ImagesDir is where the package puts the archives; the agent imports
// every archive there into containerd before the kubelet starts.
const ImagesDir = "/usr/share/ecom-agent/images"

// Images describes the ecom-agent-images package: the container images
// every node needs and no registry serves it (the pod sandbox, CoreDNS,
// local-path-provisioner and its helper, metrics-server), as OCI archives
// `make images` built from Go source. It has the agent's version: the
// agent's seeded manifests name the images of the same tree.
type Images struct {
	Common
	// Archives are the image archives (mkimage's output).
	Archives []string
}

// Build writes the package into outDir and returns its path.
func (p Images) Build(ctx context.Context, outDir string) (string, error) {
	info, err := p.Info(ctx)
	if err != nil {
		return "", err
	}
	return writeFile(info, outDir)
}

// Info stages the package's files and returns its nfpm description.
func (p Images) Info(context.Context) (*nfpm.Info, error) {
	return archivePackage{
		name: ImagesName, archives: p.Archives, build: "make images",
		changelog: []string{
			"The node images built from the ecom-agent source tree at the same",
			"version as the agent (make images).",
		},
		description: `container images of the ecom-agent nodes, for air-gapped clusters
The images every ecom-agent node needs, as OCI archives in
/usr/share/ecom-agent/images, which the agent imports into containerd
before the kubelet starts, so no node needs a registry for them: the pod
sandbox (pause), CoreDNS, local-path-provisioner with its volume helper,
and metrics-server, each a static Go program built from source at the
version the ecom-agent tree pins, reproducibly.`,
	}.info(p.Common)
}

// archivePackage is a package of image archives in ImagesDir.
type archivePackage struct {
	name, build, description string
	archives, changelog      []string
}

func (a archivePackage) info(c Common) (*nfpm.Info, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if len(a.archives) == 0 {
		return nil, fmt.Errorf("%s: no image archives (run %s)", a.name, a.build)
	}
	s := &stager{dir: c.Staging, mtime: c.MTime}
	for _, f := range a.archives {
		src, err := filepath.Abs(f)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("%s: image archive: %w (run %s)", a.name, err, a.build)
		}
		s.add(src, ImagesDir+"/"+filepath.Base(f), 0o644, files.TypeFile)
	}
	doc := "/usr/share/doc/" + a.name + "/"
	for _, f := range []struct{ src, dst string }{
		{a.name + "/copyright", doc + "copyright"},
		{a.name + "/lintian-overrides", "/usr/share/lintian/overrides/" + a.name},
	} {
		if err := s.addStatic(f.src, f.dst, 0o644, files.TypeFile); err != nil {
			return nil, err
		}
	}
	cl, err := gz(changelog(a.name, c.Version, c.Maintainer, a.changelog, c.MTime))
	if err != nil {
		return nil, err
	}
	if err := s.addData(doc+"changelog.Debian.gz", cl, 0o644, files.TypeFile); err != nil {
		return nil, err
	}
	info := baseInfo(c, a.name)
	info.License = "Apache-2.0"
	info.Contents = s.contents
	info.Description = a.description
	return info, nil
}
