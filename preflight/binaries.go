package preflight

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/version"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/status"
)

// controlPlaneBinaries lists the programs a control-plane node's units
// run, with the config key an operator changes to point elsewhere.
func controlPlaneBinaries(cfg *config.Config) []struct{ name, key, path string } {
	return []struct{ name, key, path string }{
		{"kube-apiserver", "binaries.kube_apiserver", cfg.Binaries.KubeAPIServer},
		{"kube-controller-manager", "binaries.kube_controller_manager", cfg.Binaries.KubeControllerManager},
		{"kube-scheduler", "binaries.kube_scheduler", cfg.Binaries.KubeScheduler},
		{"kube-proxy", "binaries.kube_proxy", cfg.Binaries.KubeProxy},
	}
}

// CheckBinaries checks that every control-plane program exists, asks each
// for its version and checks the versions against Kubernetes' skew policy
// for the configured version. The error says what to install or change.
func CheckBinaries(ctx context.Context, root *hostfs.Root, cfg *config.Config) ([]status.Binary, error) {
	bins := controlPlaneBinaries(cfg)
	for _, b := range bins {
		if _, err := root.Stat(b.path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s not found at %s: install the ecom-agent-kubernetes package, or set %s in the config to where it is", b.name, b.path, b.key)
			}
			return nil, fmt.Errorf("%s at %s: %w", b.name, b.path, err)
		}
	}
	// Each program takes a fraction of a second to print its version
	// (they are large static binaries): ask them all at once.
	out := make([]status.Binary, len(bins))
	errs := make([]error, len(bins))
	var wg sync.WaitGroup
	for i, b := range bins {
		wg.Go(func() {
			v, err := binaryVersion(ctx, root.Path(b.path))
			if err != nil {
				errs[i] = fmt.Errorf("%s at %s does not run: %w", b.name, b.path, err)
			}
			out[i] = status.Binary{Name: b.name, Path: b.path, Version: v}
		})
	}
	wg.Wait()
	got := map[string]string{}
	for i, b := range bins {
		if errs[i] != nil {
			return out[:i], errs[i]
		}
		got[b.name] = out[i].Version
	}
	return out, CheckSkew(cfg.KubernetesVersion, got)
}

// fileIdentity tells one version of a file from another without reading
// it: a package upgrade replaces the file (a new inode) and a rebuild
// rewrites it (a new size or modification time).
type fileIdentity struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

func identify(path string) (fileIdentity, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileIdentity{}, false
	}
	return fileIdentity{dev: st.Dev, ino: st.Ino, size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}, true
}

// versions remembers what each program printed for --version, by path and
// file identity: the control plane's programs are large static binaries
// that take a while to start on a busy node, and their version is asked
// at the preflight, while the node waits for its peers, and again when
// the control plane starts.
var versions struct {
	sync.Mutex
	m map[string]versionSeen
}

type versionSeen struct {
	id      fileIdentity
	version string
}

// binaryVersion returns the version "PATH --version" prints ("Kubernetes
// v1.37.2" gives "v1.37.2"), asking the program only when the file is not
// the one last asked.
func binaryVersion(ctx context.Context, path string) (string, error) {
	id, ok := identify(path)
	if ok {
		versions.Lock()
		seen, hit := versions.m[path]
		versions.Unlock()
		if hit && seen.id == id {
			return seen.version, nil
		}
	}
	v, err := runVersion(ctx, path)
	if err != nil || !ok {
		return v, err
	}
	// The file may have changed while it ran: remember the version only
	// for the identity it had before and still has.
	if now, ok := identify(path); ok && now == id {
		versions.Lock()
		if versions.m == nil {
			versions.m = map[string]versionSeen{}
		}
		versions.m[path] = versionSeen{id: id, version: v}
		versions.Unlock()
	}
	return v, nil
}

// runVersion runs "PATH --version" and returns the version it prints.
func runVersion(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return "", err
	}
	fields := strings.Fields(string(out))
	if len(fields) == 0 {
		return "", errors.New("--version printed nothing")
	}
	v := fields[len(fields)-1]
	if _, err := version.ParseSemantic(v); err != nil {
		return "", fmt.Errorf("--version printed %q, not a version", strings.TrimSpace(string(out)))
	}
	return v, nil
}

// CheckSkew checks the programs' versions (by program name) against
// Kubernetes' version skew policy, anchored at the configured version
// (the one the agent renders flags for): kube-apiserver must be of the
// configured minor; kube-controller-manager and kube-scheduler must not
// be newer than kube-apiserver nor more than one minor older; the kubelet
// and kube-proxy must not be newer than kube-apiserver nor more than three
// minors older.
func CheckSkew(configured string, got map[string]string) error {
	want, err := version.ParseSemantic(configured)
	if err != nil {
		return fmt.Errorf("kubernetes_version %q: %w", configured, err)
	}
	parsed := map[string]*version.Version{}
	for name, v := range got {
		pv, err := version.ParseSemantic(v)
		if err != nil {
			return fmt.Errorf("%s reports version %q: %w", name, v, err)
		}
		parsed[name] = pv
	}
	api := want
	if v, ok := parsed["kube-apiserver"]; ok {
		if v.Major() != want.Major() || v.Minor() != want.Minor() {
			return fmt.Errorf("kube-apiserver is %s but this agent renders flags for %s (kubernetes_version): install kube-apiserver v%d.%d, or an ecom-agent release made for %s", v, configured, want.Major(), want.Minor(), v)
		}
		api = v
	}
	var errs []error
	for _, c := range []struct {
		name  string
		older uint
	}{
		{"kube-controller-manager", 1}, {"kube-scheduler", 1}, {"kubelet", 3}, {"kube-proxy", 3},
	} {
		v, ok := parsed[c.name]
		if !ok {
			continue
		}
		switch {
		case v.Major() != api.Major() || v.Minor() > api.Minor():
			errs = append(errs, fmt.Errorf("%s %s is newer than kube-apiserver %s, which Kubernetes' version skew policy forbids: install %s v%d.%d", c.name, v, api, c.name, api.Major(), api.Minor()))
		case api.Minor()-v.Minor() > c.older:
			errs = append(errs, fmt.Errorf("%s %s is more than %d minor version(s) older than kube-apiserver %s (Kubernetes' version skew policy): upgrade it to v%d.%d", c.name, v, c.older, api, api.Major(), api.Minor()))
		}
	}
	return errors.Join(errs...)
}
