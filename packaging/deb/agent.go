package deb

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/files"
)

// AgentName is the agent package's name.
const AgentName = "ecom-agent"

// Agent describes the ecom-agent package.
type Agent struct {
	Common
	// Binary is the static ecom-agent to ship; Build runs it to generate the
	// unit, the man pages and the shell completions, so they always match.
	Binary string
	// Config is the commented example config, shipped as a conffile.
	Config string
	// KubeVersion is the pinned Kubernetes version ("1.37.2"): the package
	// recommends ecom-agent-kubernetes of that minor, at least that patch.
	KubeVersion string
	// ModCache is the Go module cache Binary was built from (`go env
	// GOMODCACHE` if empty): the copyright file names every module linked
	// in, with the license its license files there give.
	ModCache string
}

const agentDescription = `Kubernetes node bootstrap agent for bare-metal clusters
ecom-agent runs as a systemd daemon on every control-plane and worker host
of a bare-metal Kubernetes cluster. It generates the cluster PKI, renders
the configurations of etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and the kubelet, runs them as systemd units, finds its peers
by gossip, forms the etcd quorum exactly once, and seeds the platform's
workloads once the API server is healthy. etcd is built into the binary.

Installing the package enables and starts nothing: write
/etc/ecom-agent/config.toml (from the example in
/usr/share/doc/ecom-agent/examples/) and the cluster secret, then run
"ecom-agent join", which enables and starts ecom-agent.service.
The Kubernetes binaries come from the ecom-agent-kubernetes package, the
node images (pod sandbox and add-ons) from ecom-agent-images.`

// Build writes the package into outDir and returns its path.
func (a Agent) Build(ctx context.Context, outDir string) (string, error) {
	info, err := a.Info(ctx)
	if err != nil {
		return "", err
	}
	return writeFile(info, outDir)
}

// Info stages the package's files and returns its nfpm description.
func (a Agent) Info(ctx context.Context) (*nfpm.Info, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	if a.Binary == "" || a.Config == "" || a.KubeVersion == "" {
		return nil, fmt.Errorf("agent package: binary, config and kube version are required")
	}
	s := &stager{dir: a.Staging, mtime: a.MTime}
	run := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, a.Binary, args...)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(a.MTime.Unix(), 10))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w: %s", a.Binary, strings.Join(args, " "), err, stderr.String())
		}
		return out, nil
	}

	bin, err := filepath.Abs(a.Binary)
	if err != nil {
		return nil, err
	}
	s.add(bin, "/usr/bin/ecom-agent", 0o755, files.TypeFile)

	unit, err := run("internal", "agent-unit")
	if err != nil {
		return nil, err
	}
	if err := s.addData("/lib/systemd/system/ecom-agent.service", unit, 0o644, files.TypeFile); err != nil {
		return nil, err
	}

	// The example config is documentation, not a conffile: the real
	// /etc/ecom-agent/config.toml carries a node's own values (written by
	// the operator or cloud-init), so an upgrade never prompts over it.
	config, err := os.ReadFile(a.Config)
	if err != nil {
		return nil, err
	}
	doc := "/usr/share/doc/" + AgentName + "/"
	if err := s.addData(doc+"examples/config.toml", config, 0o644, files.TypeFile); err != nil {
		return nil, err
	}
	s.addDir("/etc/ecom-agent")
	s.addDir("/etc/ecom-agent/manifests.d")
	// The environment file (bootstrap.EnvironmentFile) ships commented
	// out: a conffile that changes only when the operator sets a proxy.
	if err := s.addStatic("ecom-agent/default", "/etc/default/ecom-agent", 0o644, files.TypeConfig); err != nil {
		return nil, err
	}

	if err := a.manPages(s, run); err != nil {
		return nil, err
	}

	for _, c := range []struct{ shell, dst string }{
		{"bash", "/usr/share/bash-completion/completions/ecom-agent"},
		{"zsh", "/usr/share/zsh/vendor-completions/_ecom-agent"},
		{"fish", "/usr/share/fish/vendor_completions.d/ecom-agent.fish"},
	} {
		data, err := run("completion", c.shell)
		if err != nil {
			return nil, err
		}
		if err := s.addData(c.dst, data, 0o644, files.TypeFile); err != nil {
			return nil, err
		}
	}

	copyright, err := agentCopyright(ctx, a.Binary, a.ModCache)
	if err != nil {
		return nil, err
	}
	if err := s.addData(doc+"copyright", copyright, 0o644, files.TypeFile); err != nil {
		return nil, err
	}
	for _, f := range []struct{ src, dst string }{
		{"ecom-agent/README.manifests.d", doc + "README.manifests.d"},
		{"ecom-agent/lintian-overrides", "/usr/share/lintian/overrides/" + AgentName},
	} {
		if err := s.addStatic(f.src, f.dst, 0o644, files.TypeFile); err != nil {
			return nil, err
		}
	}
	upstream, _, _ := strings.Cut(a.Version, "-")
	cl, err := gz(changelog(AgentName, a.Version, a.Maintainer, []string{
		"Built from the ecom-agent source tree at version",
		upstream + ".",
	}, a.MTime))
	if err != nil {
		return nil, err
	}
	if err := s.addData(doc+"changelog.Debian.gz", cl, 0o644, files.TypeFile); err != nil {
		return nil, err
	}

	info := baseInfo(a.Common, AgentName)
	info.Description = agentDescription
	info.License = "Apache-2.0"
	info.Contents = s.contents
	// deb-systemd-helper and deb-systemd-invoke, used by the maintainer
	// scripts; 1.52 is where bookworm's debhelper snippets start from.
	// The node images of the same build: the pod sandbox every pod needs
	// and the add-ons the agent seeds, which name those images.
	// iptables and ipset: the network-policy engine the agent runs
	// (network.policy) programs the filter table and ipsets with them.
	info.Depends = []string{"init-system-helpers (>= 1.52)", "iptables", "ipset", fmt.Sprintf("%s (= %s)", ImagesName, a.Version)}
	// The agent checks kube-apiserver is its configured minor and the
	// controller manager and scheduler at most one older: the same minor,
	// at least the pinned patch.
	info.Recommends = []string{
		fmt.Sprintf("%s (>= %s-1)", KubeName, a.KubeVersion),
		fmt.Sprintf("%s (<< %s~)", KubeName, nextMinor(a.KubeVersion)),
		ContainerdName,
	}
	for _, sc := range []struct {
		name string
		dst  *string
	}{
		{"ecom-agent/postinst", &info.Scripts.PostInstall},
		{"ecom-agent/prerm", &info.Scripts.PreRemove},
		{"ecom-agent/postrm", &info.Scripts.PostRemove},
	} {
		p, err := s.script(sc.name)
		if err != nil {
			return nil, err
		}
		*sc.dst = p
	}
	return info, nil
}

// manPages has the binary write its man pages (cobra's for the commands,
// section 1, and ecom-agent.toml.5), then ships each one compressed under
// /usr/share/man/man<section>.
func (a Agent) manPages(s *stager, run func(...string) ([]byte, error)) error {
	raw := s.path("man")
	if err := os.MkdirAll(raw, 0o755); err != nil {
		return err
	}
	if _, err := run("internal", "gen-man", raw); err != nil {
		return err
	}
	entries, err := os.ReadDir(raw)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".1") || strings.HasSuffix(e.Name(), ".5") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("%s internal gen-man wrote no man page", a.Binary)
	}
	sort.Strings(names)
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(raw, n))
		if err != nil {
			return err
		}
		z, err := gz(data)
		if err != nil {
			return err
		}
		section := n[len(n)-1:]
		if err := s.addData("/usr/share/man/man"+section+"/"+n+".gz", z, 0o644, files.TypeFile); err != nil {
			return err
		}
	}
	return nil
}

// nextMinor is "1.38" for "1.37.2".
func nextMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	minor, err := strconv.Atoi(parts[1])
	if err != nil {
		return v
	}
	return parts[0] + "." + strconv.Itoa(minor+1)
}
