//go:build e2e

// Package integration holds ecom-agent's end-to-end tests: the real agent
// binary on Debian test hosts with a real systemd as PID 1.
package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/images"
	"github.com/ecom-platform/ecom-agent/integration/demo"
	"github.com/ecom-platform/ecom-agent/integration/testhost"
	"github.com/ecom-platform/ecom-agent/status"
)

var (
	buildOnce sync.Once
	agentBin  string
	buildErr  error
)

// agentBinary returns the ecom-agent binary under test: $ECOM_AGENT_BIN
// (the Makefile builds it), or one built for this run.
func agentBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("ECOM_AGENT_BIN"); p != "" {
			agentBin = p
			return
		}
		dir, err := os.MkdirTemp("", "ecom-agent-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		agentBin = filepath.Join(dir, "ecom-agent")
		cmd := exec.Command("go", "build", "-o", agentBin, "../cmd/ecom-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return agentBin
}

const testSecret = "e2e-secret-0123456789abcdef0123456789abcdef"

// testControlPlaneKey is the control-plane key of the control-plane test hosts.
const testControlPlaneKey = "e2e-cp-key-fedcba9876543210fedcba9876543210"

// kubeBinDir is where the test hosts find the Kubernetes binaries: the
// directory `make kube-bins` fills, bind-mounted read-only into every host.
const kubeBinDir = "/opt/kubernetes/bin"

// containerdBinDir is where containerd's programs appear in test hosts.
const containerdBinDir = "/opt/containerd/bin"

// kubeBins returns the machine's directory of Kubernetes binaries:
// $ECOM_KUBE_BIN (the Makefile sets it), else the default cache.
func kubeBins(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ECOM_KUBE_BIN")
	if dir == "" {
		dir = filepath.Join("/var/cache/ecom-agent-kube", config.DefaultKubernetesVersion)
	}
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err != nil {
		t.Fatalf("no Kubernetes binaries in %s (%v): run `make kube-bins`", dir, err)
	}
	return dir
}

// containerdBins returns the machine's directory of containerd's
// programs: $ECOM_CONTAINERD_BIN, else the default cache.
func containerdBins(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ECOM_CONTAINERD_BIN")
	if dir == "" {
		dir = "/var/cache/ecom-agent-containerd/v2.4.2"
	}
	if _, err := os.Stat(filepath.Join(dir, "containerd")); err != nil {
		t.Fatalf("no containerd in %s (%v): run `make containerd-bins`", dir, err)
	}
	return dir
}

// imagesDir returns the directory of the images `make images` builds.
func imagesDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ECOM_IMAGES_DIR")
	if dir == "" {
		dir = "../out/images"
	}
	if _, err := os.Stat(filepath.Join(dir, images.PauseArchive)); err != nil {
		t.Fatalf("no %s in %s (%v): run `make images`", images.PauseArchive, dir, err)
	}
	return dir
}

// hostOptions are the test-host options of an e2e environment: the
// Kubernetes binaries appear read-only at kubeBinDir and containerd's at
// containerdBinDir in every host.
func hostOptions(t *testing.T, prefix string) testhost.Options {
	mount := func(src, dst string) string {
		return fmt.Sprintf("mkdir -p .%[2]s && mount --bind %[1]s .%[2]s && mount -o remount,bind,ro .%[2]s", src, dst)
	}
	return testhost.Options{Prefix: prefix, Logf: t.Logf,
		BeforeBoot: mount(kubeBins(t), kubeBinDir) + "\n" + mount(containerdBins(t), containerdBinDir)}
}

// nodeConfig is the config.toml of a test host.
func nodeConfig(h *testhost.Host, expect int, extra string) string {
	return fmt.Sprintf(`cluster_name = "e2e"
role = "control-plane"
node_name = %q
advertise_address = %q
cluster_secret = %q
control_plane_key = %q
expect = %d
%s
[binaries]
kube_apiserver = "%[7]s/kube-apiserver"
kube_controller_manager = "%[7]s/kube-controller-manager"
kube_scheduler = "%[7]s/kube-scheduler"
kubelet = "%[7]s/kubelet"
kube_proxy = "%[7]s/kube-proxy"
containerd = "%[8]s/containerd"
ctr = "%[8]s/ctr"
[kubelet]
resolv_conf = %[9]q

%[10]s`, h.Name(), h.Addr(), testSecret, testControlPlaneKey, expect, extra, kubeBinDir, containerdBinDir, testResolvConf, demo.EvictionFlags)
}

// testResolvConf is the test hosts' resolv.conf for pods (CoreDNS
// forwards there): the machine's address on the hosts' network, where no
// DNS server answers; the hosts' own /etc/resolv.conf lists none, which
// CoreDNS refuses.
const testResolvConf = "/etc/ecom-agent/resolv.conf"

// writeResolvConf writes testResolvConf on h.
func writeResolvConf(t *testing.T, h *testhost.Host) {
	t.Helper()
	conf := fmt.Sprintf("# e2e: no DNS server answers here; traffic stays on the machine\nnameserver %s\n", h.Gateway())
	if err := h.WriteFile(testResolvConf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// install puts the agent binary, its unit and config on a host.
func install(t *testing.T, h *testhost.Host, config string) {
	t.Helper()
	if err := h.CopyIn(agentBinary(t), "/usr/bin/ecom-agent", 0o755); err != nil {
		t.Fatal(err)
	}
	unit := h.MustRun(t, "/usr/bin/ecom-agent", "internal", "agent-unit")
	if err := h.WriteFile("/lib/systemd/system/ecom-agent.service", []byte(unit+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h.WriteFile("/etc/ecom-agent/config.toml", []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// The images the package ships.
	for _, a := range images.NodeArchives {
		if err := h.CopyIn(filepath.Join(imagesDir(t), a), "/usr/share/ecom-agent/images/"+a, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeResolvConf(t, h)
	h.MustRun(t, "systemctl", "daemon-reload")
}

// await polls cond every 250ms until it returns nil or timeout passes.
func await(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// show returns one systemd property of a unit.
func show(t *testing.T, h *testhost.Host, unit, prop string) string {
	t.Helper()
	return h.MustRun(t, "systemctl", "show", "-p", prop, "--value", unit)
}

// run runs a command on a host with a bounded context.
func run(h *testhost.Host, args ...string) (testhost.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return h.Run(ctx, args...)
}

func activeIs(h *testhost.Host, unit, want string) func() error {
	return func() error {
		res, _ := run(h, "systemctl", "is-active", unit)
		if got := strings.TrimSpace(res.Stdout); got != want {
			return fmt.Errorf("%s on %s is %q, want %q", unit, h.Name(), got, want)
		}
		return nil
	}
}

// hasCondition reports whether a component of the node reports reason.
func hasCondition(st status.Status, reason status.Reason) bool {
	for _, c := range st.Conditions {
		if c.Reason == reason {
			return true
		}
	}
	return false
}
