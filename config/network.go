package config

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// minServiceAddrs is the fewest addresses a service range may hold: the
// API server's and the DNS service's IPs are its first and tenth.
const minServiceAddrs = 16

// The pod network's backends (package podnet).
const (
	BackendHostGW = "host-gw"
	BackendVXLAN  = "vxlan"
)

func (l *loader) validateNetwork(c *Config) {
	n := &c.Network
	svcOK := l.checkPrefix("network.service_cidr", n.ServiceCIDR)
	podOK := l.checkPrefix("network.pod_cidr", n.PodCIDR)
	if svcOK {
		if free := n.ServiceCIDR.Addr().BitLen() - n.ServiceCIDR.Bits(); free < 4 {
			l.add("network.service_cidr", "%s is too small: it holds %d addresses and the cluster needs at least %d "+
				"(a /28 for IPv4, a /124 for IPv6); the default is %s", n.ServiceCIDR, 1<<free, minServiceAddrs, defaultServiceCIDR)
		}
	}
	if podOK {
		l.checkPodCIDRSize(c)
	}
	if svcOK && podOK {
		switch {
		case n.ServiceCIDR.Addr().Is4() != n.PodCIDR.Addr().Is4():
			l.add("network.pod_cidr", "%s is %s but network.service_cidr %s is %s; use ranges of one family (dual-stack is not supported)",
				n.PodCIDR, family(n.PodCIDR.Addr()), n.ServiceCIDR, family(n.ServiceCIDR.Addr()))
		case n.ServiceCIDR.Overlaps(n.PodCIDR):
			l.add("network.pod_cidr", "%s overlaps network.service_cidr %s; use ranges that do not overlap, e.g. the defaults %s and %s",
				n.PodCIDR, n.ServiceCIDR, defaultPodCIDR, defaultServiceCIDR)
		}
	}
	if n.Backend != BackendHostGW && n.Backend != BackendVXLAN {
		l.add("network.backend", "%q is not a backend: use %q (nodes on one layer-2 segment) or %q (nodes anywhere IP reaches)",
			n.Backend, BackendHostGW, BackendVXLAN)
	}
	if !isDNSSubdomain(n.ClusterDomain) {
		l.add("network.cluster_domain", "%q is not a DNS name: use lowercase letters, digits, '-' and '.', e.g. %q",
			n.ClusterDomain, defaultClusterDomain)
	}
}

// checkPrefix reports whether p, the value of key, is a usable range.
func (l *loader) checkPrefix(key string, p netip.Prefix) bool {
	switch {
	case !p.IsValid():
		return false // decoding reported it
	case p != p.Masked():
		l.add(key, "%s has bits set after the prefix length; did you mean %q?", p, p.Masked())
		return false
	case p.Addr().Is4In6() || p.Addr().Zone() != "":
		l.add(key, "%s is not a plain IPv4 or IPv6 range", p)
		return false
	}
	return true
}

// checkPodCIDRSize checks that the pod range holds at least one node's
// share: kube-controller-manager gives each node a /24 (IPv4) or a /64
// (IPv6) unless told otherwise with node-cidr-mask-size.
func (l *loader) checkPodCIDRSize(c *Config) {
	p := c.Network.PodCIDR
	perNode, flag := 24, "node-cidr-mask-size-ipv4"
	if p.Addr().Is6() {
		perNode, flag = 64, "node-cidr-mask-size-ipv6"
	}
	for _, f := range []string{flag, "node-cidr-mask-size"} {
		if _, ok := c.ControllerManager.ExtraFlags[f]; ok {
			return
		}
	}
	if p.Bits() > perNode {
		l.add("network.pod_cidr", "%s is smaller than the /%d kube-controller-manager gives each node; "+
			"use a larger range such as %s, or set controller_manager.extra_flags.%s", p, perNode, defaultPodCIDR, flag)
	}
}

func (l *loader) validateAdvertiseAddress(c *Config) {
	const key = "advertise_address"
	svc, pod := c.Network.ServiceCIDR, c.Network.PodCIDR
	if !l.defined[key] {
		l.detectAdvertiseAddress(c)
		return
	}
	a := c.AdvertiseAddress
	if !a.IsValid() {
		return // decoding reported it
	}
	if msg := unicastProblem(a); msg != "" {
		l.add(key, "%s %s; set the address other nodes reach this one on", a, msg)
		return
	}
	if svc.IsValid() && a.Is4() != svc.Addr().Is4() {
		l.add(key, "%s is %s but network.service_cidr %s is %s; use this node's %s address",
			a, family(a), svc, family(svc.Addr()), family(svc.Addr()))
	}
	for _, r := range []struct {
		key string
		p   netip.Prefix
	}{{"network.service_cidr", svc}, {"network.pod_cidr", pod}} {
		if r.p.IsValid() && r.p.Contains(a) {
			l.add(key, "%s is inside %s %s; the node's address must be outside the cluster's ranges: change one of them", a, r.key, r.p)
		}
	}
}

// detectAdvertiseAddress sets the advertise address to the host's only
// usable address: unicast, not loopback or link-local, of the service
// range's family and outside the service and pod ranges (which leaves out
// the addresses CNI and kube-proxy put on the host), and not the control
// plane's VIP, which the holder has too. It never picks one of several.
func (l *loader) detectAdvertiseAddress(c *Config) {
	const key = "advertise_address"
	if l.opts.HostAddrs == nil {
		l.add(key, `required here, as the host's addresses are not available; set it, e.g. advertise_address = "10.0.0.11"`)
		return
	}
	addrs, err := l.opts.HostAddrs()
	if err != nil {
		l.add(key, "not set, and the host's addresses cannot be listed (%v); set advertise_address", err)
		return
	}
	svc, pod := c.Network.ServiceCIDR, c.Network.PodCIDR
	var usable []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		switch {
		case unicastProblem(a) != "",
			svc.IsValid() && (a.Is4() != svc.Addr().Is4() || svc.Contains(a)),
			pod.IsValid() && pod.Contains(a),
			a == c.ControlPlaneVIP.Address, // on the holder's interface
			slices.Contains(usable, a):
			continue
		}
		usable = append(usable, a)
	}
	switch len(usable) {
	case 1:
		c.AdvertiseAddress = usable[0]
	case 0:
		fam := "unicast"
		if svc.IsValid() {
			fam = family(svc.Addr())
		}
		l.add(key, "not set, and this host has no usable %s address (not loopback or link-local, "+
			"outside network.service_cidr and network.pod_cidr)%s; set advertise_address", fam, listAddrs("; its addresses are: ", addrs))
	default:
		l.add(key, "not set, and this host has several usable addresses; set advertise_address to one of: %s",
			listAddrs("", usable))
	}
}

// unicastProblem says why a is not an address a node can be reached on, or
// returns "".
func unicastProblem(a netip.Addr) string {
	switch {
	case a.Zone() != "":
		return "has a zone; use a routable address without one"
	case a.Is4In6():
		return fmt.Sprintf("is an IPv4-mapped IPv6 address; write it as %s", a.Unmap())
	case a.IsUnspecified():
		return "is the unspecified address, not a node's address"
	case a.IsLoopback():
		return "is a loopback address, which other nodes and pods cannot reach"
	case a.IsMulticast():
		return "is a multicast address"
	case a.IsLinkLocalUnicast():
		return "is a link-local address"
	case !a.IsGlobalUnicast():
		return "is not a unicast address"
	}
	return ""
}

func (l *loader) validateGossipJoin(c *Config) {
	for _, j := range c.Gossip.Join {
		if msg := joinProblem(j); msg != "" {
			l.addAgain("gossip.join", "%q %s", j, msg)
		}
	}
}

// joinProblem says what is wrong with a gossip join address, or returns "".
func joinProblem(s string) string {
	const form = `; write "host" or "host:port", with IPv6 addresses in brackets: "[fd00::1]:7946"`
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		host = s[1 : len(s)-1]
	case strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1:
		var err error
		if host, port, err = net.SplitHostPort(s); err != nil {
			return "is not a valid address" + form
		}
	case strings.Count(s, ":") > 1:
		return "looks like an IPv6 address without brackets" + form
	}
	bracketed := strings.HasPrefix(s, "[")
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("has port %q; use 1-65535", port)
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if bracketed != ip.Is6() {
			return "brackets are for IPv6 addresses only" + form
		}
		if msg := unicastProblem(ip); msg != "" {
			return "has an address that " + msg
		}
		return ""
	}
	if bracketed || !isDNSSubdomain(strings.ToLower(host)) {
		return "is not an IP address or host name" + form
	}
	return ""
}

func (l *loader) validateControlPlaneEndpoint(c *Config) {
	// Unset, it is the VIP (validated as such) or nothing.
	if e := c.ControlPlaneEndpoint; e != "" && l.defined["control_plane_endpoint"] {
		if scheme, rest, ok := strings.Cut(e, "://"); ok {
			l.add("control_plane_endpoint", "%q: write it without %s://, as host[:port]: %q", e, scheme, strings.TrimSuffix(rest, "/"))
		} else if msg := joinProblem(e); msg != "" {
			l.add("control_plane_endpoint", "%q %s", e, strings.Replace(msg, `"[fd00::1]:7946"`, `"[fd00::1]:6443"`, 1))
		}
	}
}

func (l *loader) validateExtraSANs(c *Config) {
	for _, s := range c.APIServer.ExtraSANs {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
			continue
		}
		if !isDNSSubdomain(strings.TrimPrefix(s, "*.")) {
			l.addAgain("apiserver.extra_sans", "%q is neither an IP address nor a DNS name; write names in lowercase, "+
				`with a wildcard only as the whole first part ("*.example.com")`, s)
		}
	}
}

var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// isDNSLabel reports whether s is an RFC 1123 DNS label in lowercase.
func isDNSLabel(s string) bool { return len(s) <= 63 && dnsLabelRE.MatchString(s) }

// isDNSSubdomain reports whether s is an RFC 1123 DNS subdomain in
// lowercase, as Kubernetes requires of node names.
// ValidNodeName reports whether s is a valid node name: a DNS subdomain
// (lower-case letters, digits, '-' and '.'), as Kubernetes requires of a
// Node's name.
func ValidNodeName(s string) bool { return isDNSSubdomain(s) }

func isDNSSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !isDNSLabel(label) {
			return false
		}
	}
	return true
}

// family names the IP family of a.
func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// listAddrs joins addresses with ", " after prefix, or returns "" for none.
func listAddrs(prefix string, addrs []netip.Addr) string {
	if len(addrs) == 0 {
		return ""
	}
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return prefix + strings.Join(s, ", ")
}
