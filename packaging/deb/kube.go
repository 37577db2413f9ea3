package deb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
)

// KubeName is the companion package's name.
const KubeName = "ecom-agent-kubernetes"

// KubeBinaries are the programs the companion package ships in /usr/bin,
// as tools/kube/build.sh builds them.
var KubeBinaries = []string{
	"kube-apiserver", "kube-controller-manager", "kube-scheduler",
	"kubelet", "kube-proxy", "kubectl",
}

// Kube describes the ecom-agent-kubernetes package.
type Kube struct {
	Common
	// BinDir holds the binaries (tools/kube/build.sh's output directory).
	BinDir string
}

// Build writes the package into outDir and returns its path.
func (k Kube) Build(ctx context.Context, outDir string) (string, error) {
	info, err := k.Info(ctx)
	if err != nil {
		return "", err
	}
	return writeFile(info, outDir)
}

// Info stages the package's files and returns its nfpm description.
func (k Kube) Info(context.Context) (*nfpm.Info, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	upstream, _, _ := strings.Cut(k.Version, "-")
	s := &stager{dir: k.Staging, mtime: k.MTime}
	for _, b := range KubeBinaries {
		src, err := filepath.Abs(filepath.Join(k.BinDir, b))
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("%s: %w (run tools/kube/build.sh)", KubeName, err)
		}
		s.add(src, "/usr/bin/"+b, 0o755, files.TypeFile)
	}
	doc := "/usr/share/doc/" + KubeName + "/"
	for _, f := range []struct{ src, dst string }{
		{"ecom-agent-kubernetes/copyright", doc + "copyright"},
		{"ecom-agent-kubernetes/lintian-overrides", "/usr/share/lintian/overrides/" + KubeName},
	} {
		if err := s.addStatic(f.src, f.dst, 0o644, files.TypeFile); err != nil {
			return nil, err
		}
	}
	cl, err := gz(changelog(KubeName, k.Version, k.Maintainer, []string{
		"Kubernetes v" + upstream + " built from source: the k8s.io/kubernetes",
		"module pinned in the ecom-agent tree (tools/kube).",
	}, k.MTime))
	if err != nil {
		return nil, err
	}
	if err := s.addData(doc+"changelog.Debian.gz", cl, 0o644, files.TypeFile); err != nil {
		return nil, err
	}

	info := baseInfo(k.Common, KubeName)
	info.Description = fmt.Sprintf(`Kubernetes %s components for ecom-agent
The Kubernetes binaries ecom-agent runs on its nodes, built from source at
the version the agent pins: kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet, kube-proxy and kubectl, in /usr/bin.

ecom-agent writes their configuration and systemd units; this package ships
the programs only, with no units of its own, and starts nothing.`, upstream)
	info.License = "Apache-2.0"
	info.Contents = s.contents
	return info, nil
}
