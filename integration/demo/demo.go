// Package demo is the admin's path on test hosts: the .deb packages
// installed with dpkg, the same cloud-init-style config on every node,
// `ecom-agent join` on all of them at once. `make demo` runs it on hosts
// that stay up afterwards; the e2e tests run it and assert on the result.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// Options configure Up.
type Options struct {
	// Env is where the hosts start; Up starts N more in it.
	Env *testhost.Env
	// N is the number of control-plane hosts (default 3).
	N int
	// Workers is the number of worker hosts beside them: role "worker",
	// no secret, a join token made once the control plane runs.
	Workers int
	// Debs are the packages installed on every host with one dpkg -i.
	Debs []string
	// ClusterName names the cluster (default "demo").
	ClusterName string
	// JoinTimeout is `ecom-agent join --timeout` (default 10m).
	JoinTimeout time.Duration
	// Logf receives progress lines.
	Logf func(format string, args ...any)
}

// Stage is one timed step.
type Stage struct {
	Name string
	Took time.Duration
	Err  error
}

// Cluster is what Up made.
type Cluster struct {
	// Hosts are every host, the control-plane ones first.
	Hosts                  []*testhost.Host
	ControlPlanes, Workers []*testhost.Host
	Stages                 []Stage
	// Joins holds each host's `ecom-agent join` output, by host name.
	Joins map[string]testhost.Result
	// Secrets are what the control-plane nodes got: the cluster secret
	// and the control-plane key. Workers got a join token only.
	Secrets Secrets
}

// Secrets are a control-plane node's two secrets, as files on it.
type Secrets struct {
	// Cluster is the gossip key's and the agents' channel's secret.
	Cluster string
	// ControlPlane seals the CA keys.
	ControlPlane string
}

// Config is the config every control-plane node gets: the same text on
// each (cloud-init write_files would put it there), naming no single
// machine: each node takes its name from its hostname and its address from
// its only address.
func Config(cluster string, peers []string) string {
	quoted := make([]string, len(peers))
	for i, p := range peers {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf(`# /etc/ecom-agent/config.toml, the same on every control-plane node
cluster_name = %q
role = "control-plane"
cluster_secret_file = "/etc/ecom-agent/cluster-secret"
control_plane_key_file = "/etc/ecom-agent/control-plane-key"
expect = %d

[gossip]
join = [%s]

# The test hosts' own resolv.conf lists no nameserver, which CoreDNS
# refuses; pods get one naming the machine (Configure writes it).
[kubelet]
resolv_conf = %q

%s`, cluster, len(peers), strings.Join(quoted, ", "), ResolvConf, EvictionFlags)
}

// EvictionFlags lower the kubelet's disk-pressure thresholds for test
// hosts: every host's file systems are the machine's one disk, shared by
// five hosts and the builds, where the defaults for a node's own disk
// (nodefs 10%, imagefs 15% free) taint every node at once and evict the
// pods of a run (seen on this machine with 14% free). Memory keeps the
// default.
const EvictionFlags = `# Test hosts share the machine's disk: see demo.EvictionFlags.
[kubelet.extra_flags]
eviction-hard = "memory.available<100Mi,nodefs.available<3%,imagefs.available<3%,nodefs.inodesFree<3%"
`

// MountImages is a test host's BeforeBoot script that bind-mounts dir, a
// directory of image archives on this machine, read-only at
// /var/lib/ecom-agent/images/ (where an operator drops archives for the
// agent to import before the kubelet starts): the air-gapped path for the
// conformance suite's images, without a copy of them on every host.
func MountImages(dir string) string {
	return fmt.Sprintf("mkdir -p ./var/lib/ecom-agent/images && mount --bind '%s' ./var/lib/ecom-agent/images && mount -o remount,bind,ro ./var/lib/ecom-agent/images", strings.ReplaceAll(dir, "'", `'\''`))
}

// WorkerConfig is the config every worker gets: the control-plane nodes'
// config with role "worker", without their secrets, and with a join
// token file and the control-plane nodes as its join servers.
func WorkerConfig(controlPlane string, servers []string) string {
	quoted := make([]string, len(servers))
	for i, p := range servers {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	var out []string
	for _, line := range strings.Split(controlPlane, "\n") {
		switch {
		case strings.HasPrefix(line, "control_plane_key_file"), strings.HasPrefix(line, "cluster_secret_file"):
		case strings.HasPrefix(line, "role = "):
			out = append(out, `role = "worker"`)
		case strings.HasPrefix(line, "# /etc/ecom-agent/config.toml"):
			out = append(out, "# /etc/ecom-agent/config.toml, the same on every worker")
		default:
			out = append(out, line)
		}
	}
	out = append(out, "", "[join]", `token_file = "`+JoinTokenFile+`"`, "servers = ["+strings.Join(quoted, ", ")+"]", "")
	return strings.Join(out, "\n")
}

// JoinTokenFile is where a worker's join token goes.
const JoinTokenFile = "/etc/ecom-agent/join-token"

// ResolvConf is the resolv.conf the demo's kubelets give pods with
// dnsPolicy Default (CoreDNS): it names the machine's address on the
// hosts' network, where no DNS server answers, so names outside the
// cluster fail at once and no traffic leaves the machine.
const ResolvConf = "/etc/ecom-agent/resolv.conf"

// NewSecret returns a fresh cluster secret.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// NewSecrets returns a fresh cluster secret and control-plane key.
func NewSecrets() (Secrets, error) {
	c, err := NewSecret()
	if err != nil {
		return Secrets{}, err
	}
	cp, err := NewSecret()
	return Secrets{Cluster: c, ControlPlane: cp}, err
}

// Up starts the hosts, installs the packages, writes the config and joins
// every node at once. It returns what it made even on error, so the caller
// can show or tear it down.
func Up(ctx context.Context, o Options) (*Cluster, error) {
	if o.N == 0 {
		o.N = 3
	}
	if o.ClusterName == "" {
		o.ClusterName = "demo"
	}
	if o.JoinTimeout == 0 {
		o.JoinTimeout = 10 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	c := &Cluster{Joins: map[string]testhost.Result{}}
	stage := func(name string, f func() error) error {
		o.Logf("==> %s", name)
		start := time.Now()
		err := f()
		c.Stages = append(c.Stages, Stage{Name: name, Took: time.Since(start), Err: err})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		o.Logf("    %s done in %s", name, time.Since(start).Round(100*time.Millisecond))
		return nil
	}
	err := stage(fmt.Sprintf("start %d test hosts", o.N+o.Workers), func() error {
		hosts, err := o.Env.StartHosts(ctx, o.N+o.Workers)
		c.Hosts = hosts
		if err == nil {
			c.ControlPlanes, c.Workers = hosts[:o.N], hosts[o.N:]
		}
		return err
	})
	if err != nil {
		return c, err
	}
	err = stage("dpkg -i "+strings.Join(baseNames(o.Debs), " "), func() error {
		return onEach(c.Hosts, func(h *testhost.Host) error { return Install(ctx, h, o.Debs) })
	})
	if err != nil {
		return c, err
	}
	var cfg string
	err = stage("write the same config on every control-plane node", func() error {
		secrets, err := NewSecrets()
		if err != nil {
			return err
		}
		c.Secrets = secrets
		var peers []string
		for _, h := range c.ControlPlanes {
			peers = append(peers, h.Addr().String())
		}
		cfg = Config(o.ClusterName, peers)
		return onEach(c.ControlPlanes, func(h *testhost.Host) error { return Configure(h, cfg, secrets) })
	})
	if err != nil {
		return c, err
	}
	var mu sync.Mutex
	join := func(hosts []*testhost.Host) error {
		return onEach(hosts, func(h *testhost.Host) error {
			jctx, cancel := context.WithTimeout(ctx, o.JoinTimeout+time.Minute)
			defer cancel()
			res, err := h.Run(jctx, "ecom-agent", "join", "--timeout", o.JoinTimeout.String())
			mu.Lock()
			c.Joins[h.Name()] = res
			mu.Unlock()
			if err != nil {
				return fmt.Errorf("%s: %v\n%s", h.Name(), err, strings.TrimSpace(res.Stderr))
			}
			o.Logf("    %s: %s", h.Name(), strings.TrimSpace(res.Stdout))
			return nil
		})
	}
	err = stage("ecom-agent join on every control-plane node at once", func() error { return join(c.ControlPlanes) })
	if err != nil || len(c.Workers) == 0 {
		if err == nil {
			err = awaitReady(ctx, c, stage)
		}
		return c, err
	}
	err = stage("ecom-agent token create on "+c.ControlPlanes[0].Name()+"; the token and the worker config on every worker", func() error {
		res, err := c.ControlPlanes[0].Run(ctx, "ecom-agent", "token", "create", "--ttl", "1h", "--description", "demo workers")
		if err != nil {
			return fmt.Errorf("token create: %v\n%s", err, res.Stderr)
		}
		var servers []string
		for _, h := range c.ControlPlanes {
			servers = append(servers, h.Addr().String())
		}
		wcfg := WorkerConfig(cfg, servers)
		return onEach(c.Workers, func(h *testhost.Host) error {
			if err := h.WriteFile(JoinTokenFile, []byte(strings.TrimSpace(res.Stdout)+"\n"), 0o600); err != nil {
				return err
			}
			return Configure(h, wcfg, Secrets{})
		})
	})
	if err != nil {
		return c, err
	}
	err = stage("ecom-agent join on every worker at once", func() error { return join(c.Workers) })
	if err != nil {
		return c, err
	}
	return c, awaitReady(ctx, c, stage)
}

// awaitReady waits for every Node Ready and the add-ons.
func awaitReady(ctx context.Context, c *Cluster, stage func(string, func() error) error) error {
	// join returns once the control plane serves; the kubelets register
	// and their Nodes turn Ready (pod network configured) a little later.
	err := stage("every Node Ready", func() error {
		wctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
		defer cancel()
		h := c.Hosts[0]
		var last string
		for wctx.Err() == nil {
			res, err := h.Run(wctx, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "wait", "--for=condition=Ready",
				"nodes", "--all", "--timeout=30s")
			if err == nil {
				n := strings.Count(strings.TrimSpace(res.Stdout), "\n") + 1
				if n >= len(c.Hosts) {
					return nil
				}
			}
			last = strings.TrimSpace(res.Stdout + " " + res.Stderr)
			select {
			case <-wctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
		return fmt.Errorf("not every Node Ready within 4 minutes: %s", last)
	})
	if err != nil {
		return err
	}
	// The add-ons the agent seeds (DNS, storage, metrics) start from the
	// images the packages ship; verify checks them as an operator would.
	return stage("the add-ons ready (ecom-agent verify --scope addons)", func() error {
		return AwaitVerify(ctx, c.Hosts[0], "addons", 6*time.Minute)
	})
}

// AwaitVerify runs `ecom-agent verify --scope SCOPE` on h until it
// passes or timeout ends, and returns its last output as the error then.
func AwaitVerify(ctx context.Context, h *testhost.Host, scope string, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for wctx.Err() == nil {
		res, err := h.Run(wctx, "ecom-agent", "verify", "--scope", scope)
		if err == nil {
			return nil
		}
		last = strings.TrimSpace(res.Stdout + "\n" + res.Stderr)
		select {
		case <-wctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
	return fmt.Errorf("verify --scope %s not passing within %s:\n%s", scope, timeout, last)
}

// Install copies the packages to h and installs them with one dpkg -i.
func Install(ctx context.Context, h *testhost.Host, debs []string) error {
	args := []string{"dpkg", "-i"}
	for _, d := range debs {
		dst := "/var/cache/ecom-demo/" + filepath.Base(d)
		if err := h.CopyIn(d, dst, 0o644); err != nil {
			return fmt.Errorf("%s: copy %s: %w", h.Name(), d, err)
		}
		args = append(args, dst)
	}
	res, err := h.Run(ctx, args...)
	if err != nil {
		return fmt.Errorf("%s: %s: %v\n%s%s", h.Name(), strings.Join(args, " "), err, res.Stdout, res.Stderr)
	}
	return nil
}

// Configure writes the node's config and its secrets (none on a worker),
// as cloud-init's write_files would.
func Configure(h *testhost.Host, config string, s Secrets) error {
	resolv := fmt.Sprintf("# the demo: no DNS server answers here\nnameserver %s\n", h.Gateway())
	if err := h.WriteFile(ResolvConf, []byte(resolv), 0o644); err != nil {
		return err
	}
	if s.Cluster != "" {
		if err := h.WriteFile("/etc/ecom-agent/cluster-secret", []byte(s.Cluster+"\n"), 0o600); err != nil {
			return err
		}
	}
	if s.ControlPlane != "" {
		if err := h.WriteFile("/etc/ecom-agent/control-plane-key", []byte(s.ControlPlane+"\n"), 0o600); err != nil {
			return err
		}
	}
	return h.WriteFile("/etc/ecom-agent/config.toml", []byte(config), 0o644)
}

// PlatformPackage is the package of the platform's images: the demo
// installs it, the other tests leave it out (every node would import its
// images at each start).
const PlatformPackage = "ecom-agent-platform-images"

// NewestDebs returns the newest .deb of each package in dir (older builds
// may sit beside it), the platform's images among them only when platform
// is set (an error when there is none).
func NewestDebs(dir string, platform bool) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.deb"))
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("no .deb in %s after make deb", dir)
	}
	newest := map[string]string{}
	mtime := map[string]time.Time{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		pkg, _, _ := strings.Cut(filepath.Base(p), "_")
		if pkg == PlatformPackage && !platform {
			continue
		}
		if fi.ModTime().After(mtime[pkg]) {
			newest[pkg], mtime[pkg] = p, fi.ModTime()
		}
	}
	if _, ok := newest[PlatformPackage]; platform && !ok {
		return nil, fmt.Errorf("no %s package in %s (make platform-deb)", PlatformPackage, dir)
	}
	var out []string
	for _, p := range newest {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

func onEach(hosts []*testhost.Host, f func(h *testhost.Host) error) error {
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(h)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}
