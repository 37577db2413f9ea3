package reset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/netpol"
	"github.com/ecom-platform/ecom-agent/nodecheck"
	"github.com/ecom-platform/ecom-agent/podnet"
	"github.com/ecom-platform/ecom-agent/token"
	"github.com/ecom-platform/ecom-agent/units"
)

// presentUnits lists the reset units systemd knows.
func presentUnits(ctx context.Context, sd Systemd) []string {
	var out []string
	for _, n := range stopOrder() {
		st, err := sd.Status(ctx, n)
		if err == nil && st.LoadState != "" && st.LoadState != "not-found" {
			out = append(out, n)
		}
	}
	return out
}

// generatedPaths lists what the agent generated on this host that
// exists, and what reset keeps.
func generatedPaths(root *hostfs.Root) (remove, keep []string) {
	exists := func(p string) bool { ok, _ := root.Exists(p); return ok }
	// The agent's own entries of /etc/kubernetes, and the NAME.old copies
	// certificate renewal keeps of them.
	if entries, err := os.ReadDir(root.Path(bootstrap.KubernetesDir)); err == nil {
		for _, e := range entries {
			p := bootstrap.KubernetesDir + "/" + e.Name()
			if slices.Contains(bootstrap.GeneratedKubernetesEntries, strings.TrimSuffix(e.Name(), ".old")) {
				remove = append(remove, p)
			} else {
				keep = append(keep, p)
			}
		}
	}
	for _, p := range bootstrap.GeneratedPaths {
		if exists(p) {
			remove = append(remove, p)
		}
	}
	if entries, err := os.ReadDir(root.Path(bootstrap.AgentStateDir)); err == nil {
		for _, e := range entries {
			p := bootstrap.AgentStateDir + "/" + e.Name()
			if slices.Contains(bootstrap.KeptStateEntries, e.Name()) {
				keep = append(keep, p)
			} else {
				remove = append(remove, p)
			}
		}
	}
	// The ca-pin lives in the state directory today; say so if it moves.
	if p := token.DefaultPinPath; exists(p) && !slices.Contains(remove, p) {
		remove = append(remove, p)
	}
	for _, p := range []string{bootstrap.AgentConfigFile, "/etc/ecom-agent/manifests.d", "/var/log/kubernetes"} {
		if exists(p) {
			keep = append(keep, p)
		}
	}
	// Data set aside by earlier removals and resets stays: it is never
	// deleted by the agent.
	for _, p := range []string{bootstrap.EtcdDataDir, bootstrap.KubernetesDir} {
		dir, base := path.Split(p)
		entries, _ := os.ReadDir(root.Path(dir))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), base+".aside-") || strings.HasPrefix(e.Name(), base+".reset-") {
				keep = append(keep, dir+e.Name())
			}
		}
	}
	sort.Strings(keep)
	return remove, keep
}

func removePath(root *hostfs.Root, p string) error {
	info, err := os.Lstat(root.Path(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if info.IsDir() {
		return root.RemoveAll(p)
	}
	_, err = root.Remove(p)
	return err
}

// cleanupKubeProxy removes kube-proxy's iptables, ipvs and nftables
// rules with its own --cleanup, when kube-proxy ran here. It returns a
// warning, or "".
func cleanupKubeProxy(ctx context.Context, root *hostfs.Root, cfg *config.Config, r units.Runner) string {
	if r == nil {
		return ""
	}
	if ok, _ := root.Exists(bootstrap.KubeProxyConfigFile); !ok {
		return ""
	}
	bin := cfg.Binaries.KubeProxy
	if ok, _ := root.Exists(bin); !ok {
		return fmt.Sprintf("kube-proxy's rules stay: %s is missing (run `kube-proxy --cleanup` to remove them)", bin)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := r.Output(cctx, root.Path(bin), "--cleanup"); err != nil {
		return fmt.Sprintf("kube-proxy --cleanup: %v", err)
	}
	return ""
}

// cleanupNetworkPolicy removes the network-policy engine's chains and
// ipsets (the agent that ran the engine is stopped by now). It returns a
// warning, or "".
func cleanupNetworkPolicy(ctx context.Context, r units.Runner) string {
	if r == nil {
		return ""
	}
	if _, err := r.Output(ctx, "iptables-save", "-t", "filter"); err != nil {
		return "" // no iptables here: nothing of the engine's either
	}
	if _, err := netpol.Cleanup(ctx, timeoutRunner{r, 30 * time.Second}); err != nil {
		return "network policy rules: " + err.Error()
	}
	return ""
}

// removePods stops the kubelet (so it starts nothing more), then stops
// and removes every pod sandbox over CRI while the runtime still runs, as
// `kubeadm reset` does with crictl, so no pod outlives a reset
// (containerd's unit keeps its shims across its own restarts, by
// design), and removes the pod network: the bridge, the routes to other
// nodes' pods and the masquerade rule. Every step is best effort and
// bounded in time: what fails is reported.
func removePods(ctx context.Context, root *hostfs.Root, cfg *config.Config, sd Systemd, runner units.Runner) []string {
	var warns []string
	r := timeoutRunner{runner, 30 * time.Second}
	if st, err := sd.Status(ctx, bootstrap.KubeletUnit); err == nil && st.ActiveState == units.Active {
		if err := sd.Stop(ctx, bootstrap.KubeletUnit); err != nil {
			warns = append(warns, fmt.Sprintf("stop %s: %v", bootstrap.KubeletUnit, err))
		}
	}
	if sock := bootstrap.ContainerdSocket(cfg); sock != "" {
		if ok, _ := root.Exists(sock); ok {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			if _, err := removeAllPods(pctx, root.Path(sock)); err != nil {
				warns = append(warns, fmt.Sprintf("remove the pods: %v", err))
			}
			cancel()
		}
	}
	// The pod network: the node's own range is in its CNI config; the
	// routes to the other nodes' ranges exist only where it does.
	data, err := root.ReadFile(bootstrap.CNIConfFile)
	if err != nil {
		return warns
	}
	var conf struct {
		Plugins []struct {
			IPAM struct {
				Ranges [][]struct{ Subnet string }
			}
		}
	}
	if json.Unmarshal(data, &conf) == nil && len(conf.Plugins) > 0 && len(conf.Plugins[0].IPAM.Ranges) > 0 && len(conf.Plugins[0].IPAM.Ranges[0]) > 0 {
		podCIDR := conf.Plugins[0].IPAM.Ranges[0][0].Subnet
		r.Output(ctx, "iptables", append([]string{"-w", "5", "-t", "nat", "-D"}, bootstrap.MasqueradeRule(podCIDR, cfg.Network.PodCIDR.String())...)...)
	}
	r.Output(ctx, "ip", "link", "delete", "cni0")
	r.Output(ctx, "ip", "link", "delete", podnet.Device) // the vxlan backend's (its routes go with it)
	out, err := r.Output(ctx, "ip", "-o", "route", "show", "root", cfg.Network.PodCIDR.String())
	if err == nil {
		for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[1] == "via" {
				if _, err := r.Output(ctx, "ip", "route", "del", f[0]); err != nil {
					warns = append(warns, fmt.Sprintf("remove the route to %s: %v", f[0], err))
				}
			}
		}
	}
	return warns
}

// removeAllPods stops and removes every pod sandbox the CRI runtime at
// socket knows (its containers go with it) and returns how many.
func removeAllPods(ctx context.Context, socket string) (int, error) {
	conn, err := nodecheck.DialCRI(socket)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)
	list, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return 0, fmt.Errorf("list pod sandboxes at %s: %w", socket, err)
	}
	var errs []error
	n := 0
	for _, sb := range list.Items {
		name := sb.GetMetadata().GetNamespace() + "/" + sb.GetMetadata().GetName()
		if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stop pod %s: %w", name, err))
			continue
		}
		if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove pod %s: %w", name, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// timeoutRunner bounds every command it runs.
type timeoutRunner struct {
	r units.Runner
	d time.Duration
}

func (t timeoutRunner) Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.r.Output(ctx, name, args...)
}
