// Package podnet is the pod network's backends: how a node sends its pods'
// traffic to the other nodes' pod ranges, as flannel's backends of the same
// names but with no daemon and no annotation.
//
//   - host-gw routes each node's pod range through that node's address:
//     no encapsulation, full MTU, but every node must be on the same
//     layer-2 segment (a gateway must be on-link).
//   - vxlan sends pod traffic in VXLAN (UDP 8472, VNI 1) to the other
//     node's address: nodes anywhere IP reaches, 50 bytes less MTU. Each
//     node has a device ecom-vxlan whose MAC is derived from the node's
//     address (VTEPMAC), so a peer's MAC needs no publishing; its address
//     is the first address of the node's pod range. A peer's range is
//     routed through the peer's first address on ecom-vxlan (onlink), with
//     a permanent neighbour entry (that address -> the peer's MAC) and a
//     forwarding entry (the peer's MAC -> the peer's node address).
//
// The package builds the ip and bridge command lines and reads what the
// kernel holds; agent/node runs them and compares, every step.
package podnet

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Backend is the pod network's backend (config network.backend).
type Backend string

// The backends.
const (
	HostGW Backend = "host-gw"
	VXLAN  Backend = "vxlan"
)

// The VXLAN device's settings (flannel's defaults: VNI 1, the kernel's
// port 8472).
const (
	Device = "ecom-vxlan"
	VNI    = 1
	Port   = 8472
	// Overhead is what VXLAN over IPv4 takes of the parent link's MTU
	// (outer IP 20, UDP 8, VXLAN 8, inner Ethernet 14).
	Overhead = 50
)

// Peer is another node: its pod range and its address.
type Peer struct {
	PodCIDR netip.Prefix
	NodeIP  netip.Addr
}

// Gateway is the address a peer's pod range is routed through: the
// peer's own address with host-gw, the first address of its pod range
// (its VXLAN device's) with vxlan.
func (b Backend) Gateway(p Peer) netip.Addr {
	if b == VXLAN {
		return p.PodCIDR.Masked().Addr()
	}
	return p.NodeIP
}

// RouteArgs is `ip` route replace for a peer's pod range.
func (b Backend) RouteArgs(p Peer) []string {
	args := []string{"route", "replace", p.PodCIDR.Masked().String(), "via", b.Gateway(p).String()}
	if b == VXLAN {
		args = append(args, "dev", Device, "onlink")
	}
	return args
}

// MTU is the pods' MTU on a parent link of mtu: the link's with host-gw,
// less Overhead with vxlan.
func (b Backend) MTU(linkMTU int) int {
	if b == VXLAN {
		return linkMTU - Overhead
	}
	return linkMTU
}

// VTEPMAC is the MAC of a node's VXLAN device, from its IPv4 address: a
// locally administered unicast address, 0e:65 then the four bytes.
func VTEPMAC(ip netip.Addr) string {
	b := ip.As4()
	return net.HardwareAddr{0x0e, 0x65, b[0], b[1], b[2], b[3]}.String()
}

// NeighArgs is `ip` neigh replace for a peer: its gateway on the device
// resolves to its device's MAC.
func NeighArgs(p Peer) []string {
	return []string{"neigh", "replace", VXLAN.Gateway(p).String(), "lladdr", VTEPMAC(p.NodeIP), "dev", Device, "nud", "permanent"}
}

// FDBArgs is `bridge` fdb replace for a peer: frames to its device's MAC
// go to its node address.
func FDBArgs(p Peer) []string {
	return []string{"fdb", "replace", VTEPMAC(p.NodeIP), "dev", Device, "dst", p.NodeIP.String(), "self", "permanent"}
}

// Link is this node's VXLAN device as it should be.
type Link struct {
	// Parent is the interface of the node's address, Local that address.
	Parent string
	Local  netip.Addr
	MTU    int
	// Addr is the first address of the node's pod range, as a /32.
	Addr netip.Prefix
}

// NewLink is the device for a node with address local on parent (of
// parentMTU), and pod range podCIDR.
func NewLink(parent string, parentMTU int, local netip.Addr, podCIDR netip.Prefix) Link {
	return Link{Parent: parent, Local: local, MTU: VXLAN.MTU(parentMTU), Addr: netip.PrefixFrom(podCIDR.Masked().Addr(), 32)}
}

// CreateArgs are the `ip` commands that create the device and bring it up.
func (l Link) CreateArgs() [][]string {
	return [][]string{
		{"link", "add", Device, "type", "vxlan", "id", strconv.Itoa(VNI), "local", l.Local.String(), "dev", l.Parent,
			"dstport", strconv.Itoa(Port), "nolearning"},
		{"link", "set", Device, "address", VTEPMAC(l.Local), "mtu", strconv.Itoa(l.MTU), "up"},
		{"addr", "replace", l.Addr.String(), "dev", Device},
	}
}

// KernelLink is what the kernel says of the device (`ip -json -d link
// show`, `ip -json addr show`).
type KernelLink struct {
	Exists bool
	VNI    int
	Port   int
	Local  netip.Addr
	MAC    string
	MTU    int
	Up     bool
	Addrs  []netip.Prefix
}

// Differs says what of the device differs from l ("" when nothing).
func (l Link) Differs(k KernelLink) string {
	var d []string
	switch {
	case !k.Exists:
		return "missing"
	case k.VNI != VNI || k.Port != Port || k.Local != l.Local:
		return fmt.Sprintf("vni %d, port %d, local %s (want %d, %d, %s)", k.VNI, k.Port, k.Local, VNI, Port, l.Local)
	}
	if k.MAC != VTEPMAC(l.Local) {
		d = append(d, "address "+k.MAC)
	}
	if k.MTU != l.MTU {
		d = append(d, "mtu "+strconv.Itoa(k.MTU))
	}
	if !k.Up {
		d = append(d, "down")
	}
	has := false
	for _, a := range k.Addrs {
		has = has || a == l.Addr
	}
	if !has {
		d = append(d, "no address "+l.Addr.String())
	}
	return strings.Join(d, ", ")
}

// ParseLink reads `ip -json -d link show dev Device` and `ip -json addr
// show dev Device` (either empty when the device does not exist).
func ParseLink(linkJSON, addrJSON []byte) (KernelLink, error) {
	var links []struct {
		Address  string   `json:"address"`
		MTU      int      `json:"mtu"`
		Flags    []string `json:"flags"`
		LinkInfo struct {
			InfoKind string `json:"info_kind"`
			InfoData struct {
				ID    int    `json:"id"`
				Local string `json:"local"`
				Port  int    `json:"port"`
			} `json:"info_data"`
		} `json:"linkinfo"`
	}
	if len(strings.TrimSpace(string(linkJSON))) == 0 {
		return KernelLink{}, nil
	}
	if err := json.Unmarshal(linkJSON, &links); err != nil {
		return KernelLink{}, fmt.Errorf("ip -json link: %w", err)
	}
	if len(links) == 0 {
		return KernelLink{}, nil
	}
	l := links[0]
	k := KernelLink{Exists: true, VNI: l.LinkInfo.InfoData.ID, Port: l.LinkInfo.InfoData.Port, MAC: l.Address, MTU: l.MTU}
	k.Local, _ = netip.ParseAddr(l.LinkInfo.InfoData.Local)
	for _, f := range l.Flags {
		k.Up = k.Up || f == "UP"
	}
	if l.LinkInfo.InfoKind != "vxlan" {
		return KernelLink{}, fmt.Errorf("%s exists but is a %q device, not vxlan: delete it (ip link delete %s)", Device, l.LinkInfo.InfoKind, Device)
	}
	addrs, err := ParseAddrs(addrJSON)
	if err != nil {
		return KernelLink{}, err
	}
	for _, a := range addrs {
		k.Addrs = append(k.Addrs, a.Prefix)
	}
	return k, nil
}

// IfAddr is an interface's IPv4 address.
type IfAddr struct {
	Ifname string
	MTU    int
	Prefix netip.Prefix
}

// ParseAddrs reads `ip -4 -json addr show`.
func ParseAddrs(out []byte) ([]IfAddr, error) {
	if len(strings.TrimSpace(string(out))) == 0 {
		return nil, nil
	}
	var ifs []struct {
		Ifname   string `json:"ifname"`
		MTU      int    `json:"mtu"`
		AddrInfo []struct {
			Family    string `json:"family"`
			Local     string `json:"local"`
			Prefixlen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &ifs); err != nil {
		return nil, fmt.Errorf("ip -json addr: %w", err)
	}
	var out2 []IfAddr
	for _, i := range ifs {
		for _, a := range i.AddrInfo {
			ip, err := netip.ParseAddr(a.Local)
			if err != nil || a.Family != "inet" {
				continue
			}
			out2 = append(out2, IfAddr{Ifname: i.Ifname, MTU: i.MTU, Prefix: netip.PrefixFrom(ip, a.Prefixlen)})
		}
	}
	return out2, nil
}

// Neighbours reads `ip -json neigh show dev Device`: address -> MAC of the
// permanent entries.
func Neighbours(out []byte) (map[netip.Addr]string, error) {
	m := map[netip.Addr]string{}
	if len(strings.TrimSpace(string(out))) == 0 {
		return m, nil
	}
	var list []struct {
		Dst    string   `json:"dst"`
		Lladdr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("ip -json neigh: %w", err)
	}
	for _, n := range list {
		ip, err := netip.ParseAddr(n.Dst)
		if err != nil {
			continue
		}
		for _, s := range n.State {
			if s == "PERMANENT" {
				m[ip] = n.Lladdr
			}
		}
	}
	return m, nil
}

// Forwarding reads `bridge -json fdb show dev Device`: MAC -> destination
// address.
func Forwarding(out []byte) (map[string]netip.Addr, error) {
	m := map[string]netip.Addr{}
	if len(strings.TrimSpace(string(out))) == 0 {
		return m, nil
	}
	var list []struct {
		Mac string `json:"mac"`
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("bridge -json fdb: %w", err)
	}
	for _, f := range list {
		if ip, err := netip.ParseAddr(f.Dst); err == nil {
			m[f.Mac] = ip
		}
	}
	return m, nil
}
