package config

import "net/netip"

// IsControlPlane reports whether the node runs etcd and the control plane.
func (c *Config) IsControlPlane() bool { return c.Role == RoleControlPlane }

// ManagesContainerd reports whether the agent runs the node's container
// runtime (containerd from the ecom-agent-containerd package, its config
// and unit): it does unless kubelet.container_runtime_endpoint names
// another runtime's socket, which the operator then runs.
func (c *Config) ManagesContainerd() bool {
	return c.Kubelet.ContainerRuntimeEndpoint == defaultContainerRuntimeEndpoint
}

// APIServerServiceIP returns the cluster IP of the "kubernetes" service,
// the first address of the service range (10.96.0.1 by default).
func (c *Config) APIServerServiceIP() netip.Addr { return nthAddr(c.Network.ServiceCIDR, 1) }

// ClusterDNSIP returns the cluster DNS service's IP, the tenth address of
// the service range (10.96.0.10 by default).
func (c *Config) ClusterDNSIP() netip.Addr { return nthAddr(c.Network.ServiceCIDR, 10) }

// nthAddr returns the address n after the start of p, or the zero Addr if
// p is invalid or too small.
func nthAddr(p netip.Prefix, n uint64) netip.Addr {
	if !p.IsValid() {
		return netip.Addr{}
	}
	a := p.Masked().Addr()
	b := a.As16()
	for i := 15; i >= 0 && n > 0; i-- {
		sum := uint64(b[i]) + n&0xff
		b[i] = byte(sum)
		n = n>>8 + sum>>8
	}
	r := netip.AddrFrom16(b)
	if a.Is4() {
		r = r.Unmap()
	}
	if !p.Contains(r) {
		return netip.Addr{}
	}
	return r
}
