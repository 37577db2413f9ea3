package bootstrap

import (
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	componentbaseconfigv1alpha1 "k8s.io/component-base/config/v1alpha1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"

	"github.com/ecom-platform/ecom-agent/config"
)

// kube-proxy runs as a systemd unit on every node rather than as a
// DaemonSet: Services must work before any pod network does (CoreDNS, the
// seeded workloads), it needs no image, and the agent already gives it a
// certificate (user system:kube-proxy, which Kubernetes' default policy
// binds to system:node-proxier) and restarts it when its files change.

// KubeProxyConfiguration builds kube-proxy's config file contents: iptables
// mode (kubeadm's default), health and metrics on localhost, and
// kube-proxy's own conntrack defaults (it only raises the table size, never
// lowers it).
func KubeProxyConfiguration(cfg *config.Config) *kubeproxyv1alpha1.KubeProxyConfiguration {
	return &kubeproxyv1alpha1.KubeProxyConfiguration{
		TypeMeta: metav1.TypeMeta{
			APIVersion: kubeproxyv1alpha1.SchemeGroupVersion.String(),
			Kind:       "KubeProxyConfiguration",
		},
		ClientConnection: componentbaseconfigv1alpha1.ClientConnectionConfiguration{
			Kubeconfig: KubeProxyKubeconfig,
			QPS:        5,
			Burst:      10,
		},
		HostnameOverride:   cfg.NodeName,
		BindAddress:        cfg.AdvertiseAddress.String(),
		HealthzBindAddress: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 10256).String(),
		MetricsBindAddress: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 10249).String(),
		Mode:               kubeproxyv1alpha1.ProxyMode("iptables"),
		ClusterCIDR:        cfg.Network.PodCIDR.String(),
		DetectLocalMode:    kubeproxyv1alpha1.LocalMode("ClusterCIDR"),
		// NodePorts on the node's primary addresses only, not on every
		// local address (kube-proxy's own recommendation).
		NodePortAddresses: []string{"primary"},
	}
}

func kubeProxyScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := kubeproxyv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// KubeProxyConfigYAML serializes the configuration as kube-proxy reads it.
func KubeProxyConfigYAML(kc *kubeproxyv1alpha1.KubeProxyConfiguration) ([]byte, error) {
	return componentConfigYAML(kubeProxyScheme(), kc, "kube-proxy config")
}

// KubeProxyFlags are kube-proxy's flags: everything else is in its file.
func KubeProxyFlags() Flags { return Flags{"config": KubeProxyConfigFile} }
