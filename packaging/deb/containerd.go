package deb

import (
	"context"
	"fmt"
	"strings"

	"github.com/goreleaser/nfpm/v2"
)

// ContainerdName is the container runtime's companion package.
const ContainerdName = "ecom-agent-containerd"

// ContainerdBinaries are the programs it ships in /usr/bin, as
// tools/containerd/build.sh builds them.
var ContainerdBinaries = []string{"containerd", "containerd-shim-runc-v2", "ctr", "crictl"}

// ContainerdReplaces are the packages that ship the same programs:
// Debian's containerd and Docker's containerd.io (containerd, ctr), and
// cri-tools, Debian's and the Kubernetes project's package of crictl.
var ContainerdReplaces = []string{"containerd", "containerd.io", "cri-tools"}

// Containerd describes the ecom-agent-containerd package: containerd 2.x,
// because Debian 12's containerd (1.6) is older than what kubelet 1.37
// supports.
type Containerd struct {
	Common
	// BinDir holds the binaries (tools/containerd/build.sh's output).
	BinDir string
}

// Build writes the package into outDir and returns its path.
func (c Containerd) Build(ctx context.Context, outDir string) (string, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return "", err
	}
	return writeFile(info, outDir)
}

// Info stages the package's files and returns its nfpm description.
func (c Containerd) Info(context.Context) (*nfpm.Info, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	upstream, _, _ := strings.Cut(c.Version, "-")
	info, err := binariesPackage{
		name: ContainerdName, binaries: ContainerdBinaries, binDir: c.BinDir, build: "tools/containerd/build.sh",
		// crictl's configuration: the socket of the containerd the agent runs.
		conffiles: [][2]string{{"ecom-agent-containerd/crictl.yaml", "/etc/crictl.yaml"}},
		changelog: []string{
			"containerd v" + upstream + " built from source: the",
			"github.com/containerd/containerd/v2 module pinned in the ecom-agent",
			"tree (tools/containerd).",
		},
	}.info(c.Common)
	if err != nil {
		return nil, err
	}
	info.Description = fmt.Sprintf(`containerd %s container runtime for ecom-agent
The container runtime the kubelet of every ecom-agent node talks to over
CRI, built from source at the version the agent pins: containerd, its runc
shim (containerd-shim-runc-v2) and ctr, in /usr/bin; and crictl, the CRI
client (sigs.k8s.io/cri-tools), configured by /etc/crictl.yaml for this
containerd. Debian 12's containerd
(1.6) is older than what the pinned kubelet supports.

ecom-agent writes containerd's configuration and systemd unit and imports
the node's images; this package ships the programs only, with no unit of
its own, and starts nothing. runc and the CNI plugins come from Debian.`, upstream)
	// The shim runs runc; the agent configures containerd's CRI plugin
	// with Debian's CNI plugins in /usr/lib/cni.
	info.Depends = []string{"runc", "containernetworking-plugins"}
	// Debian's containerd and Docker's containerd.io ship containerd and
	// ctr in /usr/bin too, cri-tools crictl: one runtime per host, this
	// one replacing theirs instead of dpkg failing with "trying to
	// overwrite".
	info.Conflicts = ContainerdReplaces
	info.Replaces = ContainerdReplaces
	return info, nil
}
