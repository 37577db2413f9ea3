package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// validate checks the defaulted config, resolving advertise_address and the
// cluster secret on the way. Every check names its key and says what to
// write instead.
func (l *loader) validate(c *Config) {
	l.validateIdentity(c)
	l.validateNetwork(c)
	l.validateAdvertiseAddress(c)
	l.resolveSecret(c)
	l.resolveJoin(c)
	l.validatePKI(c)
	l.validatePorts(c)
	l.validatePaths(c)
	l.validateGossipJoin(c)
	l.validateExtraSANs(c)
	l.validateControlPlaneEndpoint(c)
	l.validateVIP(c)
	l.validateExtraFlags(c)
	l.validateNode(c)
}

var versionRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)

func (l *loader) validateIdentity(c *Config) {
	switch {
	case !l.defined["cluster_name"]:
		l.add("cluster_name", `required, e.g. cluster_name = "shop-prod"`)
	case !isDNSLabel(c.ClusterName):
		l.add("cluster_name", "%q is not a DNS label: use lowercase letters, digits and '-', "+
			"start and end with a letter or digit, at most 63 characters, e.g. \"shop-prod\"", c.ClusterName)
	}

	switch {
	case !l.defined["role"]:
		l.add("role", `required: role = "control-plane" or role = "worker"`)
	case c.Role != RoleControlPlane && c.Role != RoleWorker:
		l.add("role", `%q is not a role; use "control-plane" or "worker"`, c.Role)
	}

	// A node name that is not in the file came from the hostname, which
	// l.add reports itself if it could not be read.
	if !l.bad["node_name"] && !isDNSSubdomain(c.NodeName) {
		const rule = "a node name must be a DNS subdomain: lowercase letters, digits, '-' and '.', " +
			"at most 253 characters, each part starting and ending with a letter or digit"
		if l.defined["node_name"] {
			l.add("node_name", "%q is not valid; %s", c.NodeName, rule)
		} else {
			l.add("node_name", "not set, and the hostname %q is not a valid node name (%s); set node_name", c.NodeName, rule)
		}
	}

	if !versionRE.MatchString(c.KubernetesVersion) {
		hint := `e.g. "` + DefaultKubernetesVersion + `"`
		if versionRE.MatchString("v" + c.KubernetesVersion) {
			hint = fmt.Sprintf("write it with a leading v: %q", "v"+c.KubernetesVersion)
		}
		l.add("kubernetes_version", "%q is not a version vMAJOR.MINOR.PATCH; %s", c.KubernetesVersion, hint)
	}

	switch {
	case c.Expect < 1:
		l.add("expect", "%d is too small; it is the number of control-plane nodes forming the first etcd cluster: "+
			"use 1 (a single-node lab), 3 or 5", c.Expect)
	case c.Expect%2 == 0:
		l.add("expect", "%d is even: etcd needs a majority of its members up, so %d members tolerate no more "+
			"failures than %d while needing more nodes; use %d or %d", c.Expect, c.Expect, c.Expect-1, c.Expect-1, c.Expect+1)
	}
}

func (l *loader) validatePKI(c *Config) {
	p := &c.PKI
	switch p.KeyAlgorithm {
	case KeyECDSAP256, KeyRSA2048, KeyRSA3072:
	default:
		l.add("pki.key_algorithm", "%q is not supported; use %q, %q or %q",
			p.KeyAlgorithm, KeyECDSAP256, KeyRSA2048, KeyRSA3072)
	}
	if d := c.Etcd.ReplaceDeadAfter.Duration; d < minReplaceDeadAfter {
		l.add("etcd.replace_dead_after", "%s is too short: a member rebooting would count as dead; use at least %s, like \"5m\"",
			fmtDuration(d), fmtDuration(minReplaceDeadAfter))
	}
	switch sn := c.Etcd.Snapshots; {
	case sn.Interval.Duration < 0 || (sn.Interval.Duration > 0 && sn.Interval.Duration < 5*time.Minute):
		l.add("etcd.snapshots.interval", "%s: use at least \"5m\" (a snapshot reads the whole database), or \"0s\" to turn scheduled snapshots off", fmtDuration(sn.Interval.Duration))
	case sn.Retention < 1:
		l.add("etcd.snapshots.retention", "%d: keep at least 1 snapshot", sn.Retention)
	case !filepath.IsAbs(sn.Dir):
		l.add("etcd.snapshots.dir", "%q must be an absolute path, e.g. \"/var/lib/ecom-agent/snapshots\"", sn.Dir)
	}
	if a := c.Metrics.Address; a != "" {
		host, port, err := net.SplitHostPort(a)
		if err != nil || port == "" {
			l.add("metrics.address", "%q is not HOST:PORT; write it like \":7948\" (every address) or \"127.0.0.1:7948\", or \"\" to turn metrics off", a)
		} else if ip, perr := netip.ParseAddr(host); c.Metrics.Pprof && (perr != nil || !ip.IsLoopback()) {
			// The profiler shows the agent's heap and goroutines, keys
			// included, to whoever reaches it.
			l.add("metrics.pprof", "the profiler would be served on %q, which is not a loopback address: it shows the agent's memory to whoever reaches it; "+
				"set metrics.address to \"127.0.0.1:PORT\" (and tunnel to it) or turn pprof off", a)
		}
	}
	if d := c.APIServer.ReadyTimeout.Duration; d <= 0 {
		l.add("apiserver.ready_timeout", "%s is not a positive duration; write it like \"5m\"", fmtDuration(d))
	}
	positive := true
	for _, d := range []struct {
		key string
		d   time.Duration
	}{
		{"pki.ca_validity", p.CAValidity.Duration},
		{"pki.cert_validity", p.CertValidity.Duration},
		{"pki.renew_before", p.RenewBefore.Duration},
	} {
		if d.d <= 0 {
			l.add(d.key, "%s is not a positive duration; write it like \"8760h\"", fmtDuration(d.d))
			positive = false
		}
	}
	if !positive {
		return
	}
	if p.RenewBefore.Duration >= p.CertValidity.Duration {
		l.add("pki.renew_before", "%s must be shorter than pki.cert_validity (%s), or certificates renew as soon as they are made",
			fmtDuration(p.RenewBefore.Duration), fmtDuration(p.CertValidity.Duration))
	}
	if p.CertValidity.Duration > p.CAValidity.Duration {
		l.add("pki.cert_validity", "%s is longer than pki.ca_validity (%s); a certificate cannot outlive its CA",
			fmtDuration(p.CertValidity.Duration), fmtDuration(p.CAValidity.Duration))
	}
}

// fmtDuration writes whole hours as "8760h" rather than "8760h0m0s".
func fmtDuration(d time.Duration) string {
	if d != 0 && d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// fixedPorts are ports of Kubernetes components the config cannot move.
var fixedPorts = []struct {
	port  int
	owner string
}{
	{10250, "the kubelet's"},
	{10256, "kube-proxy's health"},
	{10257, "kube-controller-manager's"},
	{10259, "kube-scheduler's"},
}

func (l *loader) validatePorts(c *Config) {
	ports := []struct {
		key  string
		port int
	}{
		{"gossip.port", c.Gossip.Port},
		{"gossip.rpc_port", c.Gossip.RPCPort},
		{"join.port", c.Join.Port},
		{"etcd.client_port", c.Etcd.ClientPort},
		{"etcd.peer_port", c.Etcd.PeerPort},
		{"apiserver.port", c.APIServer.Port},
	}
	for i, p := range ports {
		if p.port < 1 || p.port > 65535 {
			l.add(p.key, "%d is not a port; use 1-65535", p.port)
			continue
		}
		for _, f := range fixedPorts {
			if p.port == f.port {
				l.add(p.key, "%d is %s port; pick another", p.port, f.owner)
			}
		}
		for _, q := range ports[:i] {
			if p.port == q.port {
				// Blame the key the operator wrote rather than a default.
				key, other := p.key, q.key
				if !l.defined[key] && l.defined[other] {
					key, other = other, key
				}
				l.add(key, "%d is also %s; every port must be different", p.port, other)
			}
		}
	}
}

// registryPattern is a registry host (a name or address, lower case),
// an optional port and an optional path of repository components.
var registryPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)

func (l *loader) validatePaths(c *Config) {
	for _, b := range binaryFields(c) {
		if !filepath.IsAbs(*b.path) {
			l.add(b.key, "%q must be an absolute path, e.g. %q", *b.path, defaultBinary(b.key))
		}
	}
	if !filepath.IsAbs(c.Kubelet.ResolvConf) {
		l.add("kubelet.resolv_conf", "%q must be an absolute path, e.g. %q", c.Kubelet.ResolvConf, defaultResolvConf)
	}
	if d := c.AddOns.StorageDir; !filepath.IsAbs(d) || filepath.Clean(d) != d || d == "/" {
		l.add("addons.storage_dir", "%q must be a clean absolute directory other than /, e.g. %q", d, defaultStorageDir)
	}
	if r := c.Seed.ImageRegistry; !registryPattern.MatchString(r) {
		l.add("seed.image_registry", "%q is not a registry name: write HOST[:PORT][/PATH] without a scheme or a trailing slash, e.g. %q", r, "registry.example.com:5000/ecom")
	}
	ep := c.Kubelet.ContainerRuntimeEndpoint
	if path, ok := strings.CutPrefix(ep, "unix://"); !ok || !filepath.IsAbs(path) {
		l.add("kubelet.container_runtime_endpoint", "%q is not a unix socket URL; write it like %q",
			ep, defaultContainerRuntimeEndpoint)
	}
}
