package config

import (
	"net/netip"
	"strings"
	"time"
)

// DefaultKubernetesVersion is the Kubernetes version used when the file
// does not set kubernetes_version.
const DefaultKubernetesVersion = "v1.37.2"

// Defaults of the keys that have one. Keys set in the file are left alone,
// even when set to a zero value, so that "expect = 0" is an error rather than
// silently 3.
const (
	defaultExpect                   = 3
	defaultGossipPort               = 7946
	defaultRPCPort                  = 7947
	defaultEtcdClientPort           = 2379
	defaultEtcdPeerPort             = 2380
	defaultAPIServerPort            = 6443
	defaultClusterDomain            = "cluster.local"
	defaultKeyAlgorithm             = KeyECDSAP256
	defaultCAValidity               = 87600 * time.Hour
	defaultCertValidity             = 8760 * time.Hour
	defaultRenewBefore              = 720 * time.Hour
	defaultReplaceDeadAfter         = 5 * time.Minute
	defaultResolvConf               = "/etc/resolv.conf"
	defaultStorageDir               = "/var/lib/ecom-agent-volumes"
	minReplaceDeadAfter             = 30 * time.Second
	defaultReadyTimeout             = 5 * time.Minute
	defaultMetricsAddress           = "127.0.0.1:7948"
	defaultContainerRuntimeEndpoint = "unix:///run/containerd/containerd.sock"
)

var (
	defaultServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")
	defaultPodCIDR     = netip.MustParsePrefix("10.244.0.0/16")
)

// applyDefaults fills in every key the file did not set, except
// advertise_address, which validation derives from the host's addresses
// once the network ranges are known.
func (l *loader) applyDefaults(c *Config) {
	set := func(key string, apply func()) {
		if !l.defined[key] {
			apply()
		}
	}
	set("node_name", func() { l.defaultNodeName(c) })
	set("expect", func() { c.Expect = defaultExpect })
	set("kubernetes_version", func() { c.KubernetesVersion = DefaultKubernetesVersion })
	set("control_plane_endpoint", func() {
		if c.ControlPlaneVIP.Address.IsValid() {
			c.ControlPlaneEndpoint = c.ControlPlaneVIP.Address.String()
		}
	})
	set("gossip.port", func() { c.Gossip.Port = defaultGossipPort })
	set("gossip.rpc_port", func() { c.Gossip.RPCPort = defaultRPCPort })
	set("join.port", func() { c.Join.Port = defaultJoinPort })
	set("network.service_cidr", func() { c.Network.ServiceCIDR = defaultServiceCIDR })
	set("network.pod_cidr", func() { c.Network.PodCIDR = defaultPodCIDR })
	set("network.cluster_domain", func() { c.Network.ClusterDomain = defaultClusterDomain })
	set("network.policy", func() { c.Network.Policy = true })
	set("network.backend", func() { c.Network.Backend = BackendHostGW })
	set("pki.key_algorithm", func() { c.PKI.KeyAlgorithm = defaultKeyAlgorithm })
	set("pki.ca_validity", func() { c.PKI.CAValidity.Duration = defaultCAValidity })
	set("pki.cert_validity", func() { c.PKI.CertValidity.Duration = defaultCertValidity })
	set("pki.renew_before", func() { c.PKI.RenewBefore.Duration = defaultRenewBefore })
	for _, b := range binaryFields(c) {
		set(b.key, func() { *b.path = defaultBinary(b.key) })
	}
	set("etcd.client_port", func() { c.Etcd.ClientPort = defaultEtcdClientPort })
	set("etcd.peer_port", func() { c.Etcd.PeerPort = defaultEtcdPeerPort })
	set("etcd.replace_dead_after", func() { c.Etcd.ReplaceDeadAfter.Duration = defaultReplaceDeadAfter })
	set("etcd.snapshots.interval", func() { c.Etcd.Snapshots.Interval.Duration = 12 * time.Hour })
	set("etcd.snapshots.retention", func() { c.Etcd.Snapshots.Retention = 5 })
	set("etcd.snapshots.dir", func() { c.Etcd.Snapshots.Dir = "/var/lib/ecom-agent/snapshots" })
	set("apiserver.port", func() { c.APIServer.Port = defaultAPIServerPort })
	set("apiserver.ready_timeout", func() { c.APIServer.ReadyTimeout.Duration = defaultReadyTimeout })
	set("seed.enabled", func() { c.Seed.Enabled = true })
	set("seed.image_registry", func() { c.Seed.ImageRegistry = DefaultImageRegistry })
	set("addons.dns", func() { c.AddOns.DNS = true })
	set("addons.storage", func() { c.AddOns.Storage = true })
	set("addons.metrics", func() { c.AddOns.Metrics = true })
	set("addons.storage_dir", func() { c.AddOns.StorageDir = defaultStorageDir })
	set("metrics.address", func() { c.Metrics.Address = defaultMetricsAddress })
	set("kubelet.container_runtime_endpoint", func() {
		c.Kubelet.ContainerRuntimeEndpoint = defaultContainerRuntimeEndpoint
	})
	set("kubelet.resolv_conf", func() { c.Kubelet.ResolvConf = defaultResolvConf })
	set("node.control_plane_taint", func() { c.Node.ControlPlaneTaint = TaintPreferNoSchedule })
}

// binaryField is a key of the binaries table and the field it sets.
type binaryField struct {
	key  string
	path *string
}

// binaryFields lists the keys of the binaries table with their fields.
func binaryFields(c *Config) []binaryField {
	b := &c.Binaries
	return []binaryField{
		{"binaries.kube_apiserver", &b.KubeAPIServer},
		{"binaries.kube_controller_manager", &b.KubeControllerManager},
		{"binaries.kube_scheduler", &b.KubeScheduler},
		{"binaries.kubelet", &b.Kubelet},
		{"binaries.kube_proxy", &b.KubeProxy},
		{"binaries.containerd", &b.Containerd},
		{"binaries.ctr", &b.Ctr},
	}
}

// defaultBinary returns the default path of a binaries key:
// binaries.kube_apiserver is /usr/bin/kube-apiserver.
func defaultBinary(key string) string {
	return "/usr/bin/" + strings.ReplaceAll(lastPart(key), "_", "-")
}

// defaultNodeName sets the node name to the lowercased hostname.
func (l *loader) defaultNodeName(c *Config) {
	if l.opts.Hostname == nil {
		l.add("node_name", `required here, as the hostname is not available; set it, e.g. node_name = "worker-1"`)
		return
	}
	h, err := l.opts.Hostname()
	if err != nil {
		l.add("node_name", "cannot read the hostname (%v); set node_name", err)
		return
	}
	c.NodeName = strings.ToLower(strings.TrimSuffix(h, "."))
}
