package bootstrap

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/ecom-platform/ecom-agent/config"
)

// Flags is a component's command-line flags, by name without dashes.
type Flags map[string]string

// Args returns the flags as sorted "--name=value" arguments, so rendered
// unit files are stable byte for byte.
func (f Flags) Args() []string {
	names := make([]string, 0, len(f))
	for n := range f {
		names = append(names, n)
	}
	sort.Strings(names)
	args := make([]string, 0, len(names))
	for _, n := range names {
		args = append(args, "--"+n+"="+f[n])
	}
	return args
}

// with returns f with the operator's extra flags laid over it. Flags the
// agent owns never reach here: config validation refuses them.
func (f Flags) with(extra map[string]string) Flags {
	for k, v := range extra {
		f[k] = v
	}
	return f
}

// EtcdServers lists the client URLs kube-apiserver uses, the local member
// first so that a healthy node keeps its API traffic on the host.
func EtcdServers(local string, members []string) []string {
	out := []string{local}
	for _, m := range members {
		if m != local {
			out = append(out, m)
		}
	}
	return out
}

// APIServerFlags builds kube-apiserver's flags; it has no config file.
func APIServerFlags(cfg *config.Config, etcdServers []string) Flags {
	f := Flags{
		"advertise-address":                  cfg.AdvertiseAddress.String(),
		"bind-address":                       "0.0.0.0",
		"secure-port":                        strconv.Itoa(cfg.APIServer.Port),
		"allow-privileged":                   "true",
		"anonymous-auth":                     "true", // /livez, /readyz and /version only; RBAC guards the rest
		"authorization-mode":                 "Node,RBAC",
		"enable-admission-plugins":           "NodeRestriction",
		"client-ca-file":                     pkiPath("ca.crt"),
		"tls-cert-file":                      pkiPath("apiserver.crt"),
		"tls-private-key-file":               pkiPath("apiserver.key"),
		"tls-cipher-suites":                  strings.Join(TLSCipherSuites, ","),
		"tls-min-version":                    "VersionTLS12",
		"kubelet-client-certificate":         pkiPath("apiserver-kubelet-client.crt"),
		"kubelet-client-key":                 pkiPath("apiserver-kubelet-client.key"),
		"kubelet-certificate-authority":      pkiPath("ca.crt"),
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname",
		"etcd-servers":                       strings.Join(etcdServers, ","),
		"etcd-cafile":                        pkiPath("etcd/ca.crt"),
		"etcd-certfile":                      pkiPath("apiserver-etcd-client.crt"),
		"etcd-keyfile":                       pkiPath("apiserver-etcd-client.key"),
		"service-account-issuer":             "https://kubernetes.default.svc." + cfg.Network.ClusterDomain,
		"service-account-key-file":           pkiPath("sa.pub"),
		"service-account-signing-key-file":   pkiPath("sa.key"),
		"service-cluster-ip-range":           cfg.Network.ServiceCIDR.String(),
		"encryption-provider-config":         EncryptionConfigFile,
		"audit-policy-file":                  AuditPolicyFile,
		"audit-log-path":                     AuditLogFile,
		"audit-log-maxage":                   "30",
		"audit-log-maxbackup":                "10",
		"audit-log-maxsize":                  "100",
		"requestheader-client-ca-file":       pkiPath("front-proxy-ca.crt"),
		"requestheader-allowed-names":        "front-proxy-client",
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
		"proxy-client-cert-file":             pkiPath("front-proxy-client.crt"),
		"proxy-client-key-file":              pkiPath("front-proxy-client.key"),
		"profiling":                          "false",
		// On SIGTERM, answer new requests 429 Retry-After (clients go
		// to another API server), drain those in flight, then stop in
		// 2 s. Without it the HTTP server waits up to the 60 s request
		// timeout for watches to close, and every restart (renewal,
		// config change, reset) costs a minute.
		"shutdown-send-retry-after": "true",
	}
	return f.with(cfg.APIServer.ExtraFlags)
}

// ControllerManagerFlags builds kube-controller-manager's flags.
func ControllerManagerFlags(cfg *config.Config) Flags {
	f := Flags{
		"kubeconfig":                       ControllerManagerKubeconfig,
		"authentication-kubeconfig":        ControllerManagerKubeconfig,
		"authorization-kubeconfig":         ControllerManagerKubeconfig,
		"bind-address":                     "127.0.0.1",
		"leader-elect":                     "true",
		"use-service-account-credentials":  "true",
		"controllers":                      "*",
		"client-ca-file":                   pkiPath("ca.crt"),
		"requestheader-client-ca-file":     pkiPath("front-proxy-ca.crt"),
		"root-ca-file":                     pkiPath("ca.crt"),
		"service-account-private-key-file": pkiPath("sa.key"),
		"cluster-signing-cert-file":        pkiPath("ca.crt"),
		"cluster-signing-key-file":         pkiPath("ca.key"),
		"cluster-name":                     cfg.ClusterName,
		"cluster-cidr":                     cfg.Network.PodCIDR.String(),
		"service-cluster-ip-range":         cfg.Network.ServiceCIDR.String(),
		"allocate-node-cidrs":              "true",
		"node-cidr-mask-size":              strconv.Itoa(nodeCIDRMaskSize(cfg.Network.PodCIDR)),
		"tls-cipher-suites":                strings.Join(TLSCipherSuites, ","),
		"profiling":                        "false",
	}
	return f.with(cfg.ControllerManager.ExtraFlags)
}

// nodeCIDRMaskSize gives each node a /24 of an IPv4 pod range (a /64 of an
// IPv6 one), or half the range when it is smaller than that.
func nodeCIDRMaskSize(pod netip.Prefix) int {
	want := 24
	if pod.Addr().Is6() {
		want = 64
	}
	if pod.Bits() >= want {
		return pod.Bits() + 1
	}
	return want
}

// SchedulerFlags builds kube-scheduler's flags.
func SchedulerFlags(cfg *config.Config) Flags {
	f := Flags{
		"kubeconfig":                SchedulerKubeconfig,
		"authentication-kubeconfig": SchedulerKubeconfig,
		"authorization-kubeconfig":  SchedulerKubeconfig,
		"bind-address":              "127.0.0.1",
		"leader-elect":              "true",
		"tls-cipher-suites":         strings.Join(TLSCipherSuites, ","),
		"profiling":                 "false",
	}
	return f.with(cfg.Scheduler.ExtraFlags)
}

// KubeletFlags builds the kubelet's few command-line flags; everything else
// lives in its KubeletConfiguration file.
func KubeletFlags(cfg *config.Config) Flags {
	f := Flags{
		"config":            KubeletConfigFile,
		"kubeconfig":        KubeletKubeconfig,
		"hostname-override": cfg.NodeName,
		"node-ip":           cfg.AdvertiseAddress.String(),
	}
	if l := cfg.Node.LabelsFlag(); l != "" {
		f["node-labels"] = l
	}
	return f.with(cfg.Kubelet.ExtraFlags)
}
