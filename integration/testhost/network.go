package testhost

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Addresses: each environment gets its own /24 of 10.77.0.0/16, so that
// environments of concurrent test processes never overlap. The bridge is .1,
// host i is .(10+i).
//
// A second segment, for hosts that must not share a layer-2 network with
// the first (a VXLAN test): its hosts are 10.78.Subnet.(10+i)/24 on the
// same bridge, and a router namespace (the environment's, with
// 10.77.Subnet.2 and 10.78.Subnet.1) forwards between the two subnets. A
// host of one segment reaches the other's only through the router, so a
// route through another segment's host address is refused by the kernel
// ("Nexthop has invalid gateway"), as across racks.
const (
	subnetMin     = 1
	subnetMax     = 250
	hostAddrBase  = 10
	maxHosts      = 240
	netnsPrefix   = "ecomtest-"
	linkPrefix    = "ect" // + env ID + "br" or "v<index>": at most 15 bytes
	netnsRunDir   = "/run/netns"
	sysClassNet   = "/sys/class/net"
	bridgeMaskLen = 24
)

// Names of an environment's network objects, all derived from its ID so
// that Sweep finds them even without a state file.
func bridgeName(envID string) string          { return linkPrefix + envID + "br" }
func vethName(envID string, index int) string { return linkPrefix + envID + "v" + strconv.Itoa(index) }
func netnsName(envID, host string) string     { return netnsPrefix + envID + "-" + host }

// Segment is a network segment of an environment.
type Segment int

// The segments.
const (
	SegmentA Segment = 0 // the default, with the machine's address
	SegmentB Segment = 1 // behind the environment's router
)

// segmentOctet is the second octet of a segment's addresses.
func segmentOctet(seg Segment) byte { return 77 + byte(seg) }

// routerName is the environment's router link (and the netns's suffix).
func routerLinkName(envID string) string { return linkPrefix + envID + "r" }

// routerAddr is the router's address on a segment.
func routerAddr(subnet int, seg Segment) netip.Addr {
	if seg == SegmentB {
		return netip.AddrFrom4([4]byte{10, segmentOctet(seg), byte(subnet), 1})
	}
	return netip.AddrFrom4([4]byte{10, 77, byte(subnet), 2})
}

// segmentPrefix is a segment's /24.
func segmentPrefix(subnet int, seg Segment) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, segmentOctet(seg), byte(subnet), 0}), bridgeMaskLen)
}

func bridgeAddr(subnet int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 77, byte(subnet), 1})
}

func hostAddr(subnet, index int) netip.Addr {
	return segmentHostAddr(subnet, index, SegmentA)
}

func segmentHostAddr(subnet, index int, seg Segment) netip.Addr {
	return netip.AddrFrom4([4]byte{10, segmentOctet(seg), byte(subnet), byte(hostAddrBase + index)})
}

func withMask(a netip.Addr) string { return netip.PrefixFrom(a, bridgeMaskLen).String() }

// envIDOfLink returns the ID of the environment a link belongs to, or "".
func envIDOfLink(link string) string {
	rest, ok := strings.CutPrefix(link, linkPrefix)
	if !ok || len(rest) < envIDLen+1 || !isEnvID(rest[:envIDLen]) {
		return ""
	}
	switch suffix := rest[envIDLen:]; {
	case suffix == "br", suffix == "r":
	case suffix[0] == 'v' && isDigits(suffix[1:]):
	default:
		return ""
	}
	return rest[:envIDLen]
}

// envIDOfNetns returns the ID of the environment a namespace belongs to, or "".
func envIDOfNetns(netns string) string {
	rest, ok := strings.CutPrefix(netns, netnsPrefix)
	if !ok || len(rest) < envIDLen+2 || !isEnvID(rest[:envIDLen]) || rest[envIDLen] != '-' {
		return ""
	}
	return rest[:envIDLen]
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// createBridge creates and starts the environment's bridge, with the
// machine's address on the hosts' network.
func createBridge(ctx context.Context, envID string, subnet int) error {
	br := bridgeName(envID)
	steps := [][]string{
		{"link", "add", br, "type", "bridge"},
		{"addr", "add", withMask(bridgeAddr(subnet)), "dev", br},
		{"link", "set", br, "up"},
	}
	for _, s := range steps {
		if _, err := run(ctx, "ip", s...); err != nil {
			return fmt.Errorf("create bridge: %w", err)
		}
	}
	return nil
}

// createRouter makes the environment's router: a namespace on the bridge
// with an address on each segment, forwarding between them (and sending
// no redirects: the segments are to stay apart).
func createRouter(ctx context.Context, envID string, subnet int) error {
	ns, veth := netnsName(envID, "router"), routerLinkName(envID)
	steps := [][]string{
		{"netns", "add", ns},
		{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", veth, "master", bridgeName(envID), "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", withMask(routerAddr(subnet, SegmentA)), "dev", "eth0"},
		{"-n", ns, "addr", "add", withMask(routerAddr(subnet, SegmentB)), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if _, err := run(ctx, "ip", s...); err != nil {
			return fmt.Errorf("create router: %w", err)
		}
	}
	sysctls := "echo 1 > /proc/sys/net/ipv4/ip_forward && " +
		"for f in all default eth0; do echo 0 > /proc/sys/net/ipv4/conf/$f/send_redirects; done"
	if _, err := run(ctx, "ip", "netns", "exec", ns, "sh", "-c", sysctls); err != nil {
		return fmt.Errorf("create router: %w", err)
	}
	return nil
}

// createHostNetwork gives a host its network namespace and its eth0, a veth
// whose other end is on the environment's bridge, with an address on its
// segment and routes to the other through the router.
func createHostNetwork(ctx context.Context, envID string, subnet int, host string, index int, seg Segment) error {
	ns, veth := netnsName(envID, host), vethName(envID, index)
	steps := [][]string{
		{"netns", "add", ns},
		{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", veth, "master", bridgeName(envID), "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", withMask(segmentHostAddr(subnet, index, seg)), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}
	if seg == SegmentB {
		steps = append(steps, []string{"-n", ns, "route", "add", "default", "via", routerAddr(subnet, SegmentB).String()})
	} else {
		steps = append(steps,
			[]string{"-n", ns, "route", "add", "default", "via", bridgeAddr(subnet).String()},
			[]string{"-n", ns, "route", "add", segmentPrefix(subnet, SegmentB).String(), "via", routerAddr(subnet, SegmentA).String()})
	}
	for _, s := range steps {
		if _, err := run(ctx, "ip", s...); err != nil {
			return fmt.Errorf("create network of %s: %w", host, err)
		}
	}
	return nil
}

// setLink sets the bridge end of a host's veth up or down: down cuts the
// host off the network as if its cable were pulled.
func setLink(ctx context.Context, envID string, index int, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if _, err := run(ctx, "ip", "link", "set", vethName(envID, index), state); err != nil {
		return fmt.Errorf("set link %s: %w", state, err)
	}
	return nil
}

// removeNetwork deletes the environment's namespaces and links (the veths go
// with their namespaces, the bridge last). Missing ones are fine.
func removeNetwork(ctx context.Context, envID string) error {
	var errs []error
	nss, err := listNetns()
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range nss {
		if envIDOfNetns(ns) != envID {
			continue
		}
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil && !notExist(ns) {
			errs = append(errs, fmt.Errorf("remove network: %w", err))
		}
	}
	links, err := listLinks()
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range links {
		if envIDOfLink(l) != envID {
			continue
		}
		if _, err := run(ctx, "ip", "link", "del", l); err != nil && linkExists(l) {
			errs = append(errs, fmt.Errorf("remove network: %w", err))
		}
	}
	return errors.Join(errs...)
}

func notExist(netns string) bool {
	_, err := os.Stat(netnsRunDir + "/" + netns)
	return errors.Is(err, os.ErrNotExist)
}

func linkExists(link string) bool {
	_, err := os.Stat(sysClassNet + "/" + link)
	return err == nil
}

// listNetns lists the named network namespaces of the machine.
func listNetns() ([]string, error) {
	return listDir(netnsRunDir)
}

// listLinks lists the network interfaces of the machine's namespace.
func listLinks() ([]string, error) {
	return listDir(sysClassNet)
}

func listDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

// hostsFile renders /etc/hosts for a host of an environment: every host of
// the environment by name, and the machine as "testhost-gateway".
func hostsFile(s *envState) []byte {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n\n")
	fmt.Fprintf(&b, "%s\ttesthost-gateway\n", bridgeAddr(s.Subnet))
	for _, h := range s.Hosts {
		fmt.Fprintf(&b, "%s\t%s\n", h.Addr, h.Name)
	}
	return []byte(b.String())
}
