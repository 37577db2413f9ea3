package bootstrap

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/images"
	"github.com/ecom-platform/ecom-agent/units"
)

// containerd, the container runtime every node's kubelet talks to over CRI.
// The programs come from the ecom-agent-containerd package; the agent
// writes the configuration and the unit, as it does for the Kubernetes
// components, and imports the node's images before the kubelet starts.
const (
	ContainerdUnit       = "containerd.service"
	ContainerdConfigFile = "/etc/containerd/config.toml"
	ContainerdRoot       = "/var/lib/containerd"
	// CNIConfDir holds the pod network's config, which the agent writes
	// once the node has its pod CIDR; CNIBinDir is where Debian's
	// containernetworking-plugins puts bridge, host-local, portmap and
	// loopback.
	CNIConfDir = "/etc/cni/net.d"
	CNIBinDir  = "/usr/lib/cni"
	// ImagesDir is where operators drop image archives for air-gapped
	// nodes; PackageImagesDir holds the ones the package ships (the pause
	// image). Both are imported into containerd's k8s.io namespace
	// before the kubelet starts.
	ImagesDir        = "/var/lib/ecom-agent/images"
	PackageImagesDir = "/usr/share/ecom-agent/images"
)

// ContainerdSocket is the path of the CRI socket the kubelet uses.
func ContainerdSocket(cfg *config.Config) string {
	return strings.TrimPrefix(cfg.Kubelet.ContainerRuntimeEndpoint, "unix://")
}

// CanLowerOOMScore reports whether processes on this host may lower their
// OOM score adjustment (CAP_SYS_RESOURCE in the bounding set). Pod
// sandboxes and Guaranteed pods ask for negative scores; where the host
// withholds the capability (an unprivileged LXC container, this project's
// CI machine), runc fails every sandbox with "can't get final child's PID
// from pipe", so containerd is told to clamp the scores to its own
// instead. A variable so tests can pretend either host.
var CanLowerOOMScore = func() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return true
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err != nil || caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return true
}

// ContainerdConfig builds containerd's config (version 3, containerd 2.x):
// the CRI plugin runs pods with runc under systemd's cgroups (the kubelet's
// cgroup driver), takes the sandbox image from the node's own images so
// no registry is needed, and finds Debian's CNI plugins. restrictOOM
// clamps pods' OOM score adjustments to containerd's own (see
// CanLowerOOMScore).
func ContainerdConfig(cfg *config.Config, restrictOOM bool) map[string]any {
	runtime := map[string]any{
		"containerd": map[string]any{
			"default_runtime_name": "runc",
			"runtimes": map[string]any{
				"runc": map[string]any{
					"runtime_type": "io.containerd.runc.v2",
					"options":      map[string]any{"SystemdCgroup": true},
				},
			},
		},
		"cni": map[string]any{
			"bin_dirs": []string{CNIBinDir},
			"conf_dir": CNIConfDir,
		},
	}
	if restrictOOM {
		runtime["restrict_oom_score_adj"] = true
	}
	return map[string]any{
		"version": 3,
		"root":    ContainerdRoot,
		"state":   "/run/containerd",
		"grpc":    map[string]any{"address": ContainerdSocket(cfg)},
		"plugins": map[string]any{
			"io.containerd.cri.v1.images": map[string]any{
				"snapshotter":   "overlayfs",
				"pinned_images": map[string]any{"sandbox": images.PauseImage},
			},
			"io.containerd.cri.v1.runtime": runtime,
		},
	}
}

// ContainerdConfigTOML serializes ContainerdConfig under the generated-file
// header.
func ContainerdConfigTOML(cfg *config.Config, restrictOOM bool) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(generatedHeader("#"))
	if err := toml.NewEncoder(&buf).Encode(ContainerdConfig(cfg, restrictOOM)); err != nil {
		return nil, fmt.Errorf("containerd config: %w", err)
	}
	return buf.Bytes(), nil
}

func (r *Renderer) phaseContainerdConfig(_ context.Context) error {
	if !r.cfg.ManagesContainerd() {
		return nil
	}
	data, err := ContainerdConfigTOML(r.cfg, !CanLowerOOMScore())
	if err != nil {
		return err
	}
	return r.write(ContainerdConfigFile, data, 0o644, "")
}

// ContainerdUnitSpec runs containerd as upstream's unit does: its shims
// and containers outlive a restart of containerd (KillMode=process), it
// manages its own cgroup subtree, and the kernel kills it last.
func ContainerdUnitSpec(cfg *config.Config) units.Spec {
	return units.Spec{
		Name:          ContainerdUnit,
		Description:   "containerd container runtime (run by ecom-agent)",
		Documentation: []string{"https://containerd.io", docsURL},
		Wants:         []string{"network-online.target"},
		After:         []string{"network-online.target", "local-fs.target"},
		Type:          units.TypeNotify,
		ExecStart:     []string{cfg.Binaries.Containerd, "--config=" + ContainerdConfigFile},
		// A proxy's settings for image pulls, if the operator has any.
		EnvironmentFiles: []string{"-" + EnvironmentFile},
		Restart:          units.RestartAlways,
		RestartDelay:     5 * time.Second,
		LimitNOFILE:      1048576,
		KillMode:         units.KillProcess,
		Delegate:         true,
		StartLimit:       &units.StartLimit{Interval: 0},
		WantedBy:         []string{"multi-user.target"},
	}
}
