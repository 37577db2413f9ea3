package deb

import (
	"context"
	"fmt"
	"strings"

	"github.com/goreleaser/nfpm/v2"
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

// KubeReplaces are the packages that ship the same programs in /usr/bin.
var KubeReplaces = []string{"kubernetes-client", "kubectl", "kubelet", "kubeadm"}

// Info stages the package's files and returns its nfpm description.
func (k Kube) Info(context.Context) (*nfpm.Info, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	upstream, _, _ := strings.Cut(k.Version, "-")
	info, err := binariesPackage{
		name: KubeName, binaries: KubeBinaries, binDir: k.BinDir, build: "tools/kube/build.sh",
		changelog: []string{
			"Kubernetes v" + upstream + " built from source: the k8s.io/kubernetes",
			"module pinned in the ecom-agent tree (tools/kube).",
		},
	}.info(k.Common)
	if err != nil {
		return nil, err
	}
	info.Description = fmt.Sprintf(`Kubernetes %s components for ecom-agent
The Kubernetes binaries ecom-agent runs on its nodes, built from source at
the version the agent pins: kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet, kube-proxy and kubectl, in /usr/bin.

ecom-agent writes their configuration and systemd units; this package ships
the programs only, with no units of its own, and starts nothing.`, upstream)
	// The same programs in /usr/bin: Debian's kubernetes-client (kubectl)
	// and the upstream packages of pkgs.k8s.io. One set per host: dpkg
	// replaces theirs instead of failing with "trying to overwrite".
	info.Conflicts = KubeReplaces
	info.Replaces = KubeReplaces
	return info, nil
}
