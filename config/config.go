package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

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

// ControlPlaneEndpointHostPort is control_plane_endpoint's host (IPv6
// without brackets) and port (apiserver.port when it names none); false
// when it is not set. The config was validated, so it parses.
func (c *Config) ControlPlaneEndpointHostPort() (string, int, bool) {
	e := c.ControlPlaneEndpoint
	if e == "" {
		return "", 0, false
	}
	if host, port, err := net.SplitHostPort(e); err == nil {
		n, _ := strconv.Atoi(port)
		return host, n, true
	}
	return strings.TrimSuffix(strings.TrimPrefix(e, "["), "]"), c.APIServer.Port, true
}
