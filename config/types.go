// Package config holds ecom-agent's configuration: the TOML file at
// /etc/ecom-agent/config.toml, decoded strictly, defaulted and validated.
package config

import (
	"fmt"
	"net/netip"
	"time"
)

// DefaultPath is where the daemon and the CLI read the config from.
const DefaultPath = "/etc/ecom-agent/config.toml"

// Role is what a node does in the cluster.
type Role string

// The roles a node can have.
const (
	RoleControlPlane Role = "control-plane"
	RoleWorker       Role = "worker"
)

// KeyAlgorithm names the algorithm of every generated private key.
type KeyAlgorithm string

// The supported key algorithms.
const (
	KeyECDSAP256 KeyAlgorithm = "ecdsa-p256"
	KeyRSA2048   KeyAlgorithm = "rsa-2048"
	KeyRSA3072   KeyAlgorithm = "rsa-3072"
)

// Duration is a time.Duration written in TOML as a Go duration string
// ("8760h", "30m").
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string such as "8760h".
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("%q is not a duration; write it like \"8760h\" or \"30m\" (the largest unit is h)", text)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Config is the whole agent configuration after defaults are applied.
type Config struct {
	// ClusterName labels gossip and the kubeconfigs; nodes of other
	// clusters are refused.
	ClusterName string `toml:"cluster_name"`
	// Role is control-plane or worker.
	Role Role `toml:"role"`
	// NodeName defaults to the hostname.
	NodeName string `toml:"node_name"`
	// AdvertiseAddress is the address other nodes reach this one on.
	AdvertiseAddress netip.Addr `toml:"advertise_address"`
	// ClusterSecret is the control-plane nodes' shared secret (gossip
	// encryption, the agents' request channel); exactly one of it and
	// ClusterSecretFile is set on a control-plane node, neither on a
	// worker (it joins with Join.Token and is given the gossip key).
	// After loading, ClusterSecret holds the secret either way (read from
	// ClusterSecretFile if that was given); it prints as "[redacted]".
	ClusterSecret     Secret `toml:"cluster_secret"`
	ClusterSecretFile string `toml:"cluster_secret_file"`
	// ControlPlaneKey is the second secret, held by control-plane nodes
	// only: it seals the cluster's CA keys and authenticates the calls
	// that form etcd's quorum and let a member in (kubeadm keeps its
	// --certificate-key apart from the join token the same way). Exactly
	// one of it and ControlPlaneKeyFile is set on a control-plane node,
	// neither on a worker; after loading it holds the key either way.
	ControlPlaneKey     Secret `toml:"control_plane_key"`
	ControlPlaneKeyFile string `toml:"control_plane_key_file"`
	// Expect is the number of control-plane nodes that form the first
	// etcd quorum.
	Expect int `toml:"expect"`
	// KubernetesVersion is the version of the kube binaries, "v1.37.2".
	KubernetesVersion string `toml:"kubernetes_version"`
	// ControlPlaneEndpoint is the API's address for clients outside the
	// control plane, "host[:port]" (port default apiserver.port): a DNS
	// name or address the operator provides (round-robin DNS, a load
	// balancer), in admin.conf, `ecom-agent kubeconfig` and the API
	// server's certificate. "" means each node's own address.
	ControlPlaneEndpoint string `toml:"control_plane_endpoint"`
	// ControlPlaneVIP is a virtual IP the control-plane agents hold
	// between them; when set, control_plane_endpoint defaults to it.
	ControlPlaneVIP VIP `toml:"control_plane_vip"`

	Gossip            Gossip    `toml:"gossip"`
	Join              Join      `toml:"join"`
	Network           Network   `toml:"network"`
	PKI               PKI       `toml:"pki"`
	Binaries          Binaries  `toml:"binaries"`
	Etcd              Etcd      `toml:"etcd"`
	APIServer         APIServer `toml:"apiserver"`
	ControllerManager Component `toml:"controller_manager"`
	Scheduler         Component `toml:"scheduler"`
	Kubelet           Kubelet   `toml:"kubelet"`
	Node              Node      `toml:"node"`
	Seed              Seed      `toml:"seed"`
	AddOns            AddOns    `toml:"addons"`
	Metrics           Metrics   `toml:"metrics"`
}

// VIP is the control plane's virtual IP, as kube-vip's ARP mode gives:
// one control-plane agent at a time holds it (elected through an etcd
// lease; the holder's API server ready), moves it with gratuitous ARP,
// and lets go of it when it stops. Workers ignore it: they reach the API
// through their own load balancer.
type VIP struct {
	// Address is an IPv4 address on the control-plane nodes' segment
	// that nothing else uses; unset: no VIP.
	Address netip.Addr `toml:"address"`
	// Interface is where the holder puts it; "" is the interface of
	// advertise_address.
	Interface string `toml:"interface"`
}

// Metrics configures the agent's Prometheus endpoint.
type Metrics struct {
	// Address is where /metrics, /healthz and /readyz are served
	// (default "127.0.0.1:7948": on the node only; ":7948" for every
	// address); "" turns them off.
	Address string `toml:"address"`
	// Pprof also serves Go's profiler at /debug/pprof/ there (default
	// off): for finding where the agent spends its CPU or memory. Only
	// on a loopback address: the profiler shows the agent's memory.
	Pprof bool `toml:"pprof"`
}

// Gossip configures peer discovery.
type Gossip struct {
	// Port is the memberlist TCP/UDP port (default 7946).
	Port int `toml:"port"`
	// RPCPort is the TCP port of the agents' authenticated request
	// channel (default 7947): quorum promises and commits, CA transfer.
	RPCPort int `toml:"rpc_port"`
	// Join lists addresses ("host" or "host:port") of nodes to join.
	Join []string `toml:"join"`
}

// Network holds the cluster's address ranges and DNS domain.
type Network struct {
	ServiceCIDR   netip.Prefix `toml:"service_cidr"`   // default 10.96.0.0/12
	PodCIDR       netip.Prefix `toml:"pod_cidr"`       // default 10.244.0.0/16
	ClusterDomain string       `toml:"cluster_domain"` // default cluster.local
	// Policy has every node enforce the cluster's NetworkPolicies with
	// kube-router's network-policy controller inside the agent (default
	// true); false for a cluster whose own CNI enforces them.
	Policy bool `toml:"policy"`
	// Backend is how pod traffic reaches the other nodes: "host-gw"
	// (default: routed through their addresses, every node on one
	// layer-2 segment) or "vxlan" (encapsulated, nodes anywhere IP
	// reaches). The same on every node.
	Backend string `toml:"backend"`
}

// PKI configures certificate generation.
type PKI struct {
	KeyAlgorithm KeyAlgorithm `toml:"key_algorithm"` // default ecdsa-p256
	CAValidity   Duration     `toml:"ca_validity"`   // default 87600h (10 years)
	CertValidity Duration     `toml:"cert_validity"` // default 8760h (1 year)
	RenewBefore  Duration     `toml:"renew_before"`  // default 720h (30 days)
}

// Binaries are the paths of the Kubernetes programs the units run.
type Binaries struct {
	KubeAPIServer         string `toml:"kube_apiserver"`          // default /usr/bin/kube-apiserver
	KubeControllerManager string `toml:"kube_controller_manager"` // default /usr/bin/kube-controller-manager
	KubeScheduler         string `toml:"kube_scheduler"`          // default /usr/bin/kube-scheduler
	Kubelet               string `toml:"kubelet"`                 // default /usr/bin/kubelet
	KubeProxy             string `toml:"kube_proxy"`              // default /usr/bin/kube-proxy
	// Containerd and Ctr are containerd's programs (package
	// ecom-agent-containerd); its runc shim must be in the PATH beside.
	Containerd string `toml:"containerd"` // default /usr/bin/containerd
	Ctr        string `toml:"ctr"`        // default /usr/bin/ctr
}

// Component holds settings every Kubernetes component shares.
type Component struct {
	// ExtraFlags are appended to the component's command line; flags the
	// agent owns are refused.
	ExtraFlags map[string]string `toml:"extra_flags"`
}

// Etcd configures the local etcd member.
type Etcd struct {
	ClientPort int `toml:"client_port"` // default 2379
	PeerPort   int `toml:"peer_port"`   // default 2380
	// ReplaceDeadAfter is how long a member must be failed in gossip, with
	// etcd having no transport to it, before a standby control-plane node
	// replaces it (default 5m; at least 30s, so a reboot is not a death).
	ReplaceDeadAfter Duration          `toml:"replace_dead_after"`
	ExtraFlags       map[string]string `toml:"extra_flags"`
	Snapshots        Snapshots         `toml:"snapshots"`
}

// Snapshots are the daemon's scheduled etcd snapshots.
type Snapshots struct {
	// Interval between a node's snapshots (default 12h); 0 turns them
	// off. Control-plane nodes take theirs one at a time.
	Interval Duration `toml:"interval"`
	// Retention is how many scheduled snapshots a node keeps (default
	// 5); the oldest beyond it are removed. Snapshots saved by hand are
	// never removed.
	Retention int `toml:"retention"`
	// Dir is where they go (default /var/lib/ecom-agent/snapshots); an
	// operator may mount remote storage there.
	Dir string `toml:"dir"`
}

// APIServer configures kube-apiserver.
type APIServer struct {
	// Port is the secure port (default 6443).
	Port int `toml:"port"`
	// ExtraSANs are added to the serving certificate (DNS names or IPs).
	ExtraSANs []string `toml:"extra_sans"`
	// ReadyTimeout bounds the wait for /readyz after the control-plane
	// units start (default 5m); past it the status names the unhealthy
	// unit and shows its journal.
	ReadyTimeout Duration          `toml:"ready_timeout"`
	ExtraFlags   map[string]string `toml:"extra_flags"`
}

// Seed configures seeding the platform's workload manifests.
type Seed struct {
	// Enabled turns seeding on (default true). When off, no agent of
	// this node takes part in the seeding Lease.
	Enabled bool `toml:"enabled"`
	// ImageRegistry is the registry, and path, the platform's images are
	// named from ("HOST[:PORT][/PATH]"). The default, DefaultImageRegistry,
	// serves nothing: the images are those the agent imported from the
	// ecom-agent-platform-images package. A cluster that pulls names its
	// own registry, where the same images are pushed, and Grafana's (not
	// built here, so seeded only then).
	ImageRegistry string `toml:"image_registry"`
}

// DefaultImageRegistry is the name of the images the nodes import.
const DefaultImageRegistry = "ecom-agent.local"

// AddOns switches the cluster add-ons the seeder applies with the
// platform's manifests, each on by default; a cluster that brings its own
// DNS, storage or metrics API turns the agent's off (the seeder then
// prunes what it applied of it before).
type AddOns struct {
	// DNS is CoreDNS, Deployment kube-system/coredns and Service kube-dns.
	DNS bool `toml:"dns"`
	// Storage is the default StorageClass local-path and its node-local
	// provisioner (namespace local-path-storage).
	Storage bool `toml:"storage"`
	// Metrics is metrics-server, the metrics API of HPAs and kubectl top.
	Metrics bool `toml:"metrics"`
	// StorageDir is where the local volumes live on every node (default
	// /var/lib/ecom-agent-volumes), one directory per claim.
	StorageDir string `toml:"storage_dir"`
}

// Kubelet configures the kubelet.
type Kubelet struct {
	// ContainerRuntimeEndpoint is the CRI socket
	// (default unix:///run/containerd/containerd.sock).
	ContainerRuntimeEndpoint string `toml:"container_runtime_endpoint"`
	// ResolvConf is the resolv.conf the kubelet gives pods with
	// dnsPolicy Default, CoreDNS among them: its nameservers are where
	// cluster DNS forwards names outside the cluster (default
	// /etc/resolv.conf, like k3s's --resolv-conf). It must list at least
	// one nameserver that is not loopback.
	ResolvConf string            `toml:"resolv_conf"`
	ExtraFlags map[string]string `toml:"extra_flags"`
}
