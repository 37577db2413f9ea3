package config

import (
	"net/netip"
	"regexp"
)

// interfaceNameRE is what Linux accepts as an interface name: at most 15
// bytes, no '/', ':' or white space.
var interfaceNameRE = regexp.MustCompile(`^[^/:\s]{1,15}$`)

func (l *loader) validateVIP(c *Config) {
	v := c.ControlPlaneVIP
	if v.Interface != "" && (!interfaceNameRE.MatchString(v.Interface) || v.Interface == "." || v.Interface == "..") {
		l.add("control_plane_vip.interface", "%q is not an interface name (at most 15 characters, no '/', ':' or spaces); "+
			`name the interface as "ip link" shows it, or leave it out for the one with advertise_address`, v.Interface)
	}
	a := v.Address
	if !a.IsValid() {
		if v.Interface != "" {
			l.add("control_plane_vip.interface", "is set but control_plane_vip.address is not; set the address too, or remove the interface")
		}
		return
	}
	const key = "control_plane_vip.address"
	if msg := unicastProblem(a); msg != "" {
		l.add(key, "%s %s; use a free address on the control-plane nodes' segment", a, msg)
		return
	}
	if !a.Is4() {
		l.add(key, "%s is IPv6: the agents announce the address by ARP, which is IPv4 only; "+
			"use an IPv4 address, or your own load balancer's name in control_plane_endpoint", a)
		return
	}
	if a == c.AdvertiseAddress {
		l.add(key, "%s is this node's advertise_address; the VIP must be an address no node has, so it can move", a)
	}
	for _, j := range c.Gossip.Join {
		if ip, err := netip.ParseAddr(serverHost(j)); err == nil && ip == a {
			l.add(key, "%s is in gossip.join, so a node has it; the VIP must be an address no node has, so it can move", a)
		}
	}
	for _, r := range []struct {
		key string
		p   netip.Prefix
	}{{"network.service_cidr", c.Network.ServiceCIDR}, {"network.pod_cidr", c.Network.PodCIDR}} {
		if r.p.IsValid() && r.p.Contains(a) {
			l.add(key, "%s is inside %s %s; use a free address on the control-plane nodes' segment", a, r.key, r.p)
		}
	}
}
