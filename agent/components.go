package agent

import (
	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/agent/controlplane"
	"github.com/ecom-platform/ecom-agent/agent/etcdmember"
	"github.com/ecom-platform/ecom-agent/agent/joinserver"
	"github.com/ecom-platform/ecom-agent/agent/membership"
	"github.com/ecom-platform/ecom-agent/agent/node"
	"github.com/ecom-platform/ecom-agent/agent/noderole"
	"github.com/ecom-platform/ecom-agent/agent/platform"
	"github.com/ecom-platform/ecom-agent/agent/policy"
	"github.com/ecom-platform/ecom-agent/agent/render"
	"github.com/ecom-platform/ecom-agent/agent/renewal"
	"github.com/ecom-platform/ecom-agent/agent/snapshots"
	agentvip "github.com/ecom-platform/ecom-agent/agent/vip"
	"github.com/ecom-platform/ecom-agent/agent/workercreds"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/kubeclient"
	"github.com/ecom-platform/ecom-agent/seed"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/vip"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/kubernetes"
)

// build makes the node's components for its role, in start order (see
// docs/architecture.md), and the runner that steps them.
//
// Control-plane node: membership (gossip, RPC, formation) -> render ->
// etcd member -> control plane -> node side -> network policy and the
// control-plane role label on the Node; renewal,
// the workers' join endpoint and scheduled etcd snapshots once etcd
// serves; the platform's watch and the control plane's VIP (when one is
// configured) once the API serves.
// Worker: membership -> render -> worker credentials (and the API load
// balancer) -> node side -> network policy.
func (d *Daemon) build() (*component.Runner, error) {
	cfg, root, log := d.deps.Config, d.deps.Root, d.deps.Log
	members, err := membership.New(membership.Deps{
		Config: cfg, Root: root, Log: log, Store: d.store, Systemd: d.sd, Now: d.deps.Now,
		Timing: d.deps.Test.Timing, FastGossip: d.deps.Test.FastGossip, Hooks: d.deps.Test.Quorum,
	})
	if err != nil {
		return nil, err
	}
	d.members = members
	files := render.New(cfg, root, log.With("component", render.Name), d.store)
	nodeDeps := node.Deps{
		Config: cfg, Root: root, Log: log.With("component", node.Name), Store: d.store, Systemd: d.sd,
		Run: d.deps.Run, Written: files.Written, Members: members.Members,
	}
	// Both roles enforce NetworkPolicy once the node side runs, under
	// kube-proxy's identity (bound to ecom-agent:network-policy).
	enforce := policy.New(policy.Deps{
		Config: cfg, Root: root, Log: log.With("component", policy.Name), Run: d.deps.Run,
		Kubeconfig: bootstrap.KubeProxyKubeconfig, Now: d.deps.Now,
	})
	var entries []component.Entry
	if cfg.IsControlPlane() {
		etcd := etcdmember.New(etcdmember.Deps{
			Config: cfg, Root: root, Log: log.With("component", etcdmember.Name), Store: d.store,
			Systemd: d.sd, Membership: members, Written: files.Written,
		})
		cp := controlplane.New(controlplane.Deps{
			Config: cfg, Root: root, Log: log.With("component", controlplane.Name), Store: d.store,
			Systemd: d.sd, Now: d.deps.Now, Written: files.Written,
		})
		// The kubelet registers with the local API server, so the node
		// side starts once that one is ready.
		nodeDeps.Kubeconfig = bootstrap.AgentKubeconfig
		nodeSide := node.New(nodeDeps)
		renew := renewal.New(renewal.Deps{
			Config: cfg, Root: root, Log: log.With("component", renewal.Name), Store: d.store,
			Systemd: d.sd, Now: d.deps.Now, Refreshed: d.refresh,
		})
		entries = []component.Entry{
			{Component: members},
			{Component: files, Needs: members},
			{Component: etcd, Needs: files},
			{Component: cp, Needs: etcd},
			{Component: nodeSide, Needs: cp},
			{Component: enforce, Needs: nodeSide},
			{Component: noderole.New(noderole.Deps{
				Node: cfg.NodeName, Log: log.With("component", noderole.Name), Now: d.deps.Now,
				Taint: cfg.Node.ControlPlaneTaint, ControlPlanes: func() []string { return controlPlaneNames(members.Members()) },
				Client: func() (kubernetes.Interface, error) {
					rc, err := kubeclient.RESTConfig(root, bootstrap.AgentKubeconfig)
					if err != nil {
						return nil, err
					}
					return kubernetes.NewForConfig(rc)
				},
			}), Needs: nodeSide},
			{Component: renew, Needs: etcd},
			{Component: snapshots.New(snapshots.Deps{
				Config: cfg, Root: root, Log: log.With("component", snapshots.Name), Now: d.deps.Now, Store: d.store,
			}), Needs: etcd},
			{Component: joinserver.New(joinserver.Deps{
				Config: cfg, Root: root, Log: log.With("component", joinserver.Name), Now: d.deps.Now,
				Members: members.Members, Registered: joinserver.NodesInAPI(root, bootstrap.AgentKubeconfig),
			}), Needs: etcd},
			{Component: platform.New(platform.Deps{
				Log: log.With("component", platform.Name), Now: d.deps.Now, Read: platform.FromAPI(root),
				NotSeeded: notSeeded(cfg),
			}), Needs: cp},
		}
		// The VIP's component starts first thing: a node that crashed
		// holding the address takes it off before anything else; it
		// stands for the VIP once its API server is ready.
		if cfg.ControlPlaneVIP.Address.IsValid() {
			entries = append(entries, component.Entry{Component: agentvip.New(agentvip.Deps{
				Config: cfg, Log: log.With("component", agentvip.Name), Now: d.deps.Now,
				Host: vip.System{Run: d.deps.Run}, APIReady: cp.Serving,
				Client: func() (*clientv3.Client, error) { return etcdclient.Local(root, cfg) },
			})})
		}
	} else {
		worker := workercreds.New(workercreds.Deps{
			Config: cfg, Root: root, Log: log.With("component", workercreds.Name), Systemd: d.sd,
			Now: d.deps.Now, Members: members.Members,
		})
		nodeDeps.Kubeconfig = bootstrap.KubeProxyKubeconfig
		nodeDeps.LoadBalancer = worker.LoadBalancer
		nodeSide := node.New(nodeDeps)
		entries = []component.Entry{
			{Component: members},
			{Component: files, Needs: members},
			{Component: worker, Needs: files},
			{Component: nodeSide, Needs: worker},
			{Component: enforce, Needs: nodeSide},
		}
	}
	return component.NewRunner(log, entries...), nil
}

// notSeeded are the platform's workloads the seeder leaves out on this
// cluster, as the status shows them.
func notSeeded(cfg *config.Config) []status.PlatformProblem {
	if seed.GrafanaSeeded(cfg.Seed) {
		return nil
	}
	return []status.PlatformProblem{{Object: seed.GrafanaObject, Reason: seed.GrafanaNotSeeded}}
}

// controlPlaneNames are the control-plane nodes in the gossip view.
func controlPlaneNames(ms []gossip.Member) []string {
	var names []string
	for _, m := range ms {
		if m.MetaErr == nil && m.Meta.Role == config.RoleControlPlane {
			names = append(names, m.Name)
		}
	}
	return names
}
