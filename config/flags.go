package config

import (
	"maps"
	"regexp"
	"slices"
	"strings"
)

// OwnedFlags lists, per component, the command-line flags the agent sets
// itself. extra_flags may not set them: the agent derives them from the
// rest of the config and the cluster's state, and a second value would
// either be ignored or break the node. Components are "etcd",
// "kube-apiserver", "kube-controller-manager", "kube-scheduler" and
// "kubelet"; flag names are without leading dashes.
var OwnedFlags = map[string][]string{
	"etcd": {
		"name", "data-dir", "listen-client-urls", "advertise-client-urls",
		"listen-peer-urls", "initial-advertise-peer-urls", "initial-cluster",
		"initial-cluster-state", "initial-cluster-token", "cert-file", "key-file",
		"trusted-ca-file", "client-cert-auth", "peer-cert-file", "peer-key-file",
		"peer-trusted-ca-file", "peer-client-cert-auth", "config-file",
		"listen-metrics-urls",
	},
	"kube-apiserver": {
		"advertise-address", "secure-port", "etcd-servers", "etcd-cafile",
		"etcd-certfile", "etcd-keyfile", "tls-cert-file", "tls-private-key-file",
		"client-ca-file", "kubelet-client-certificate", "kubelet-client-key",
		"kubelet-certificate-authority", "service-account-issuer",
		"service-account-key-file", "service-account-signing-key-file",
		"service-cluster-ip-range", "authorization-mode",
		"encryption-provider-config", "audit-policy-file", "audit-log-path",
		"requestheader-client-ca-file", "proxy-client-cert-file",
		"proxy-client-key-file", "requestheader-allowed-names",
		"requestheader-extra-headers-prefix", "requestheader-group-headers",
		"requestheader-username-headers", "enable-bootstrap-token-auth",
		"anonymous-auth", "bind-address", "allow-privileged",
		"enable-admission-plugins",
	},
	"kube-controller-manager": {
		"kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig",
		"cluster-signing-cert-file", "cluster-signing-key-file", "root-ca-file",
		"service-account-private-key-file", "cluster-cidr",
		"service-cluster-ip-range", "cluster-name", "leader-elect",
		"bind-address", "use-service-account-credentials", "client-ca-file",
		"requestheader-client-ca-file", "allocate-node-cidrs", "controllers",
	},
	"kube-scheduler": {
		"kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig",
		"leader-elect", "bind-address",
	},
	"kubelet": {
		"config", "kubeconfig", "bootstrap-kubeconfig", "hostname-override",
		"node-ip", "container-runtime-endpoint", "cert-dir",
		// [node] labels and taints.
		"node-labels", "register-with-taints",
	},
}

// fromKey names the config key an owned flag comes from, where an
// operator would otherwise reach for the flag.
var fromKey = map[string]string{"node-labels": "node.labels", "register-with-taints": "node.taints"}

// flagName is what a command-line flag's name may look like.
var flagName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// validateExtraFlags checks every extra_flags table: flag names written
// without dashes, none that the agent owns, values on one line.
func (l *loader) validateExtraFlags(c *Config) {
	tables := []struct {
		table, component string
		flags            map[string]string
	}{
		{"etcd", "etcd", c.Etcd.ExtraFlags},
		{"apiserver", "kube-apiserver", c.APIServer.ExtraFlags},
		{"controller_manager", "kube-controller-manager", c.ControllerManager.ExtraFlags},
		{"scheduler", "kube-scheduler", c.Scheduler.ExtraFlags},
		{"kubelet", "kubelet", c.Kubelet.ExtraFlags},
	}
	for _, t := range tables {
		for _, name := range slices.Sorted(maps.Keys(t.flags)) {
			key := keyName([]string{t.table, "extra_flags", name})
			bare := strings.TrimLeft(name, "-")
			switch {
			case slices.Contains(OwnedFlags[t.component], bare) && fromKey[bare] != "":
				l.add(key, "the agent sets --%s itself from %s; set that instead", bare, fromKey[bare])
			case slices.Contains(OwnedFlags[t.component], bare):
				l.add(key, "the agent sets --%s itself; remove it", bare)
			case bare != name:
				l.add(key, "write the flag name without dashes: %s", keyName([]string{bare}))
			case strings.Contains(name, "="):
				flag, value, _ := strings.Cut(name, "=")
				l.add(key, "write the flag's value on the right: %s = %q", keyName([]string{flag}), value)
			case !flagName.MatchString(name):
				l.add(key, "%q is not a flag name; flag names are letters, digits, '-', '_' and '.'", name)
			case strings.ContainsAny(t.flags[name], "\n\r\x00"):
				l.add(key, "the value must be on one line")
			}
		}
	}
}
