// Package bootstrap turns a node's configuration into the files that node
// needs: kubeconfigs, the etcd config, the control-plane flags, the kubelet
// configuration, encryption-at-rest and audit policy, and the systemd units
// that run them. Builders are pure functions of typed values; writing goes
// through a hostfs.Root, so the same code serves the daemon (root "/"),
// `ecom-agent render --root DIR` and the tests.
package bootstrap

// Logical paths on a node. The layout follows kubeadm's so operators find
// things where they expect them.
const (
	KubernetesDir = "/etc/kubernetes"
	PKIDir        = "/etc/kubernetes/pki"

	AdminKubeconfig             = "/etc/kubernetes/admin.conf"
	SuperAdminKubeconfig        = "/etc/kubernetes/super-admin.conf"
	ControllerManagerKubeconfig = "/etc/kubernetes/controller-manager.conf"
	SchedulerKubeconfig         = "/etc/kubernetes/scheduler.conf"
	KubeletKubeconfig           = "/etc/kubernetes/kubelet.conf"
	// AgentKubeconfig is the agent's own identity (group ecom-agent:agents).
	AgentKubeconfig = "/etc/kubernetes/ecom-agent.conf"
	// KubeProxyKubeconfig is kube-proxy's identity (user system:kube-proxy).
	KubeProxyKubeconfig = "/etc/kubernetes/kube-proxy.conf"
	KubeProxyConfigFile = "/var/lib/kube-proxy/config.yaml"

	EtcdConfigFile       = "/etc/kubernetes/etcd/etcd.yaml"
	EtcdDataDir          = "/var/lib/etcd"
	EncryptionConfigFile = "/etc/kubernetes/encryption/config.yaml"
	AuditPolicyFile      = "/etc/kubernetes/audit/policy.yaml"
	AuditLogFile         = "/var/log/kubernetes/audit/audit.log"

	KubeletDir        = "/var/lib/kubelet"
	KubeletConfigFile = "/var/lib/kubelet/config.yaml"
	KubeletPKIDir     = "/var/lib/kubelet/pki"
	// KubeletClientCert and KubeletServerCert are the kubelet's own
	// certificate store files (cert and key in one PEM). The kubelet
	// loads them at start and rotates them through CSRs afterwards.
	KubeletClientCert = "/var/lib/kubelet/pki/kubelet-client-current.pem"
	KubeletServerCert = "/var/lib/kubelet/pki/kubelet-server-current.pem"

	SystemdDir     = "/etc/systemd/system"
	AgentUnitFile  = "/lib/systemd/system/ecom-agent.service"
	AgentStateDir  = "/var/lib/ecom-agent"
	AgentStateFile = "/var/lib/ecom-agent/state.json"
	// GossipKeyFile is a worker's gossip key, given by the control-plane
	// agent that let it join (control-plane nodes derive theirs).
	GossipKeyFile   = "/var/lib/ecom-agent/gossip.key"
	AgentConfigFile = "/etc/ecom-agent/config.toml"
	// EnvironmentFile is the operator's environment for the agent,
	// containerd and the kubelet (HTTP_PROXY, HTTPS_PROXY, NO_PROXY),
	// read if it exists; the package ships it commented out.
	EnvironmentFile = "/etc/default/ecom-agent"
	AgentBinary     = "/usr/bin/ecom-agent"
	AgentRuntimeDir = "/run/ecom-agent"
	AgentSocket     = "/run/ecom-agent/agent.sock"
)

// PKI file paths, relative to PKIDir's logical path.
func pkiPath(name string) string { return PKIDir + "/" + name }

// APILoadBalancerPort is where every worker's agent serves the API load
// balancer on 127.0.0.1: the kubelet and kube-proxy of a worker talk to
// https://127.0.0.1:6444, which spreads to the healthy API servers.
const APILoadBalancerPort = 6444
