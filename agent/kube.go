package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rbacac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/seed"
)

// restConfig reads a kubeconfig the renderer wrote.
func restConfig(root *hostfs.Root, path string) (*rest.Config, error) {
	data, err := root.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.UserAgent = "ecom-agent/" + Version
	cfg.Timeout = 30 * time.Second
	return cfg, nil
}

// probeReadyz asks an API server's /readyz (verbose) and returns nil when
// it answers 200, else an error carrying the checks that fail.
func probeReadyz(ctx context.Context, cfg *rest.Config) error {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+"/readyz?verbose", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("/readyz: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var failing []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "[-]") {
			failing = append(failing, strings.TrimSuffix(strings.TrimPrefix(l, "[-]"), " failed: reason withheld"))
		}
	}
	if len(failing) == 0 {
		failing = []string{strings.TrimSpace(string(body))}
	}
	if n := len(failing); n > 3 {
		failing = append(failing[:3], fmt.Sprintf("and %d more", n-3))
	}
	return fmt.Errorf("/readyz %d, failing: %s", resp.StatusCode, strings.Join(failing, ", "))
}

// probeAPIServers asks every control-plane node's kube-apiserver for
// /readyz at once, as the agent's own identity: one per started etcd
// member, on the member's peer address and the API server's port.
func probeAPIServers(ctx context.Context, root *hostfs.Root, cfg *config.Config, members []EtcdMember) []APIServerHealth {
	base, err := restConfig(root, bootstrap.AgentKubeconfig)
	var out []APIServerHealth
	for _, m := range members {
		if !m.Started || len(m.PeerURLs) == 0 {
			continue
		}
		u, perr := url.Parse(m.PeerURLs[0])
		if perr != nil {
			continue
		}
		addr, perr := netip.ParseAddr(u.Hostname())
		if perr != nil {
			continue
		}
		h := APIServerHealth{Node: m.Name, URL: "https://" + netip.AddrPortFrom(addr, uint16(cfg.APIServer.Port)).String()}
		if err != nil {
			h.Error = err.Error()
		}
		out = append(out, h)
	}
	if err != nil {
		return out
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			c := rest.CopyConfig(base)
			c.Host = out[i].URL
			if err := probeReadyz(ctx, c); err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Ready = true
		})
	}
	wg.Wait()
	return out
}

// bootstrapRBAC creates the bindings the cluster needs from the agent
// rather than assuming them, with server-side apply so it is idempotent:
//   - the agents' group (pki.AgentGroup) is cluster-admin: the seeder
//     applies whatever manifests an admin drops in manifests.d, RBAC
//     included, which needs every right it grants;
//   - admin.conf's group (kubeadm:cluster-admins, as kubeadm names it) is
//     cluster-admin, so admin.conf is not system:masters and can be
//     revoked;
//   - kubelets renew their own client certificates (the CSR approver
//     auto-approves system:nodes' self-node-client requests).
//
// Nodes themselves are authorized by the Node authorizer and the
// NodeRestriction admission plugin, both on in the API server's flags.
// It runs with super-admin.conf (system:masters), which needs no binding.
func bootstrapRBAC(ctx context.Context, cs kubernetes.Interface) error {
	bindings := []*rbacac.ClusterRoleBindingApplyConfiguration{
		groupBinding("ecom-agent:agents", "cluster-admin", pki.AgentGroup),
		groupBinding("kubeadm:cluster-admins", "cluster-admin", "kubeadm:cluster-admins"),
		groupBinding("ecom-agent:node-autoapprove-certificate-rotation",
			"system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "system:nodes"),
	}
	for _, b := range bindings {
		_, err := cs.RbacV1().ClusterRoleBindings().Apply(ctx, b, metav1.ApplyOptions{FieldManager: seed.FieldManager, Force: true})
		if err != nil {
			return fmt.Errorf("cluster role binding %s: %w", *b.Name, err)
		}
	}
	return nil
}

func groupBinding(name, role, group string) *rbacac.ClusterRoleBindingApplyConfiguration {
	return rbacac.ClusterRoleBinding(name).
		WithLabels(map[string]string{seed.ManagedByLabel: seed.ManagedByValue}).
		WithRoleRef(rbacac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(role)).
		WithSubjects(rbacac.Subject().WithAPIGroup(rbacv1.GroupName).WithKind(rbacv1.GroupKind).WithName(group))
}
