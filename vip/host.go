// Package vip is the host side of the control plane's virtual IP: the
// address on an interface, and the gratuitous ARP that tells the
// segment's switches and neighbours where it went. Which node holds it
// is decided elsewhere (agent/vip, through an etcd election); this
// package only carries the decision out on one host, as kube-vip and
// keepalived do.
package vip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"

	"github.com/ecom-platform/ecom-agent/units"
)

// Host is what the holder changes on its host. System is the real one;
// tests swap in a record of the host's addresses.
type Host interface {
	// InterfaceOf names the interface that holds addr (the node's
	// advertised address), where the VIP goes when none is configured.
	InterfaceOf(addr netip.Addr) (string, error)
	// Has reports whether iface holds addr.
	Has(iface string, addr netip.Addr) (bool, error)
	// Add puts addr on iface as a /32; Remove takes it off. Neither
	// fails when there is nothing to do.
	Add(ctx context.Context, iface string, addr netip.Addr) error
	Remove(ctx context.Context, iface string, addr netip.Addr) error
	// Announce sends gratuitous ARP for addr from iface's hardware
	// address, so the segment moves its traffic here at once instead of
	// when its ARP caches expire.
	Announce(iface string, addr netip.Addr) error
}

// System is the Host of this machine: `ip` for the address (as the pod
// network's routes), a raw ARP socket for the announcement.
type System struct {
	Run units.Runner
}

var _ Host = System{}

// Label marks the address on its interface ("eth0:vip" in `ip addr`),
// so an operator sees whose it is.
func label(iface string) string {
	// A label is at most 15 bytes and must start with the interface's
	// name; a long name gets no label rather than a refused command.
	if l := iface + ":vip"; len(l) <= 15 {
		return l
	}
	return ""
}

// InterfaceOf implements Host.
func (System) InterfaceOf(addr netip.Addr) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list interfaces: %w", err)
	}
	for _, ifi := range ifs {
		if has, err := hasAddr(&ifi, addr); err == nil && has {
			return ifi.Name, nil
		}
	}
	return "", fmt.Errorf("no interface holds %s; set control_plane_vip.interface", addr)
}

// Has implements Host.
func (System) Has(iface string, addr netip.Addr) (bool, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return false, fmt.Errorf("interface %s: %w", iface, err)
	}
	return hasAddr(ifi, addr)
}

func hasAddr(ifi *net.Interface, addr netip.Addr) (bool, error) {
	as, err := ifi.Addrs()
	if err != nil {
		return false, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr {
				return true, nil
			}
		}
	}
	return false, nil
}

// Add implements Host.
func (s System) Add(ctx context.Context, iface string, addr netip.Addr) error {
	args := []string{"addr", "replace", netip.PrefixFrom(addr, addr.BitLen()).String(), "dev", iface}
	if l := label(iface); l != "" {
		args = append(args, "label", l)
	}
	if _, err := s.Run.Output(ctx, "ip", args...); err != nil {
		return fmt.Errorf("add %s to %s: %w", addr, iface, err)
	}
	return nil
}

// Remove implements Host.
func (s System) Remove(ctx context.Context, iface string, addr netip.Addr) error {
	has, err := s.Has(iface, addr)
	if err != nil || !has {
		return err
	}
	if _, err := s.Run.Output(ctx, "ip", "addr", "del", netip.PrefixFrom(addr, addr.BitLen()).String(), "dev", iface); err != nil {
		return fmt.Errorf("remove %s from %s: %w", addr, iface, err)
	}
	return nil
}

// Announce implements Host: a gratuitous ARP request (RFC 5227's
// announcement: sender and target address addr, target hardware address
// zero) and a gratuitous reply (target hardware address our own, what
// `arping -A` sends and Linux's arp_is_garp takes for one), both
// broadcast: some neighbours update on one kind only.
func (System) Announce(iface string, addr netip.Addr) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", iface, err)
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return fmt.Errorf("ARP socket on %s: %w", iface, err)
	}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
		return fmt.Errorf("ARP socket on %s: %w", iface, err)
	}
	for _, g := range []struct {
		op     arp.Operation
		target net.HardwareAddr
	}{
		{arp.OperationRequest, make(net.HardwareAddr, len(ifi.HardwareAddr))},
		{arp.OperationReply, ifi.HardwareAddr},
	} {
		p, err := arp.NewPacket(g.op, ifi.HardwareAddr, addr, g.target, addr)
		if err != nil {
			return fmt.Errorf("gratuitous ARP for %s: %w", addr, err)
		}
		if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
			return fmt.Errorf("gratuitous ARP for %s on %s: %w", addr, iface, err)
		}
	}
	return nil
}
