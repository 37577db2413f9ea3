package node

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ecom-platform/ecom-agent/podnet"
)

// routePeers brings the kernel in step with the other nodes' pod ranges
// (want: pod range -> node address) through the configured backend:
// compared with what the kernel holds on every step (the route table;
// with vxlan also the device, its neighbour and forwarding entries), not
// with what this agent last wrote, so a link that went down and up (which
// takes its routes along) or an entry deleted by hand comes back within a
// step. podCIDR is this node's range (invalid until allocated). It
// returns the pods' MTU for the CNI config (0: the link's).
func (n *Node) routePeers(ctx context.Context, want map[netip.Prefix]netip.Addr, podCIDR netip.Prefix) (int, []error) {
	backend := podnet.Backend(n.d.Config.Network.Backend)
	var errs []error
	mtu := 0
	if backend == podnet.VXLAN {
		if !podCIDR.IsValid() {
			return 0, nil // the device's address is this node's range
		}
		m, err := n.vxlanDevice(ctx, podCIDR)
		if err != nil {
			return 0, []error{err}
		}
		mtu = m
		errs = append(errs, n.vxlanPeers(ctx, want)...)
	} else if !n.vxlanGone {
		// Switched from vxlan: its device (and the routes through it) go.
		if _, err := n.d.Run.Output(ctx, "ip", "-json", "-d", "link", "show", "dev", podnet.Device); err == nil {
			if _, err := n.d.Run.Output(ctx, "ip", "link", "delete", podnet.Device); err != nil {
				return 0, []error{fmt.Errorf("remove %s (network.backend is %s): %w", podnet.Device, backend, err)}
			}
			n.d.Log.Info("removed the VXLAN device: network.backend is host-gw", "device", podnet.Device)
		}
		n.vxlanGone = true
	}

	kernel, err := n.kernelRoutes(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for cidr, nodeIP := range want {
		p := podnet.Peer{PodCIDR: cidr, NodeIP: nodeIP}
		via := backend.Gateway(p)
		if kernel[cidr] == via && n.routes[cidr] == via {
			continue
		}
		if _, err := n.d.Run.Output(ctx, "ip", backend.RouteArgs(p)...); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s (%s): %w", cidr, via, backend, err))
			continue
		}
		if n.routes[cidr] == via {
			n.d.Log.Warn("restored a route to another node's pods that had gone from the kernel's table (a link down and up?)", "pod_cidr", cidr, "via", via)
		} else {
			n.d.Log.Info("routed another node's pods", "pod_cidr", cidr, "via", via, "backend", backend)
		}
		n.routes[cidr] = via
	}
	for cidr := range n.routes {
		if _, ok := want[cidr]; ok {
			continue
		}
		if _, err := n.d.Run.Output(ctx, "ip", "route", "del", cidr.String()); err != nil && !strings.Contains(err.Error(), "No such process") {
			errs = append(errs, fmt.Errorf("remove route %s: %w", cidr, err))
			continue
		}
		n.d.Log.Info("removed the route of a node that is gone", "pod_cidr", cidr)
		delete(n.routes, cidr)
	}
	return mtu, errs
}

// vxlanDevice makes the VXLAN device what it should be: on the interface
// of the node's address, with its MAC and its range's first address. It
// returns the pods' MTU.
func (n *Node) vxlanDevice(ctx context.Context, podCIDR netip.Prefix) (int, error) {
	local := n.d.Config.AdvertiseAddress
	out, err := n.d.Run.Output(ctx, "ip", "-4", "-json", "addr", "show")
	if err != nil {
		return 0, fmt.Errorf("read the addresses: %w", err)
	}
	addrs, err := podnet.ParseAddrs(out)
	if err != nil {
		return 0, err
	}
	i := slices.IndexFunc(addrs, func(a podnet.IfAddr) bool { return a.Prefix.Addr() == local })
	if i < 0 {
		return 0, fmt.Errorf("no interface has this node's address %s (advertise_address) for the VXLAN device", local)
	}
	want := podnet.NewLink(addrs[i].Ifname, addrs[i].MTU, local, podCIDR)
	linkOut, lerr := n.d.Run.Output(ctx, "ip", "-json", "-d", "link", "show", "dev", podnet.Device)
	if lerr != nil && !strings.Contains(lerr.Error(), "does not exist") {
		return 0, fmt.Errorf("read %s: %w", podnet.Device, lerr)
	}
	var addrOut []byte
	if lerr == nil {
		if addrOut, err = n.d.Run.Output(ctx, "ip", "-4", "-json", "addr", "show", "dev", podnet.Device); err != nil {
			return 0, fmt.Errorf("read %s: %w", podnet.Device, err)
		}
	}
	have, err := podnet.ParseLink(linkOut, addrOut)
	if err != nil {
		return 0, err
	}
	diff := want.Differs(have)
	if diff == "" {
		return want.MTU, nil
	}
	steps := want.CreateArgs()
	switch {
	case !have.Exists:
	case have.VNI != podnet.VNI || have.Port != podnet.Port || have.Local != local:
		// Its identity cannot change in place: make it again.
		if _, err := n.d.Run.Output(ctx, "ip", "link", "delete", podnet.Device); err != nil {
			return 0, fmt.Errorf("replace %s (%s): %w", podnet.Device, diff, err)
		}
	default:
		steps = steps[1:]
	}
	for _, s := range steps {
		if _, err := n.d.Run.Output(ctx, "ip", s...); err != nil {
			return 0, fmt.Errorf("VXLAN device %s: %w", podnet.Device, err)
		}
	}
	n.d.Log.Info("set up the VXLAN device", "device", podnet.Device, "was", diff, "parent", want.Parent, "mtu", want.MTU, "address", want.Addr)
	return want.MTU, nil
}

// vxlanPeers makes the device's neighbour and forwarding entries those of
// the other nodes: each one's gateway resolves to its MAC, which goes to
// its address; entries of nodes that are gone are removed.
func (n *Node) vxlanPeers(ctx context.Context, want map[netip.Prefix]netip.Addr) []error {
	r := n.d.Run
	neighOut, err := r.Output(ctx, "ip", "-json", "neigh", "show", "dev", podnet.Device)
	if err != nil {
		return []error{fmt.Errorf("read %s's neighbours: %w", podnet.Device, err)}
	}
	fdbOut, err := r.Output(ctx, "bridge", "-json", "fdb", "show", "dev", podnet.Device)
	if err != nil {
		return []error{fmt.Errorf("read %s's forwarding entries: %w", podnet.Device, err)}
	}
	neigh, err := podnet.Neighbours(neighOut)
	if err != nil {
		return []error{err}
	}
	fdb, err := podnet.Forwarding(fdbOut)
	if err != nil {
		return []error{err}
	}
	var errs []error
	wantNeigh, wantFDB := map[netip.Addr]bool{}, map[string]bool{}
	for cidr, nodeIP := range want {
		p := podnet.Peer{PodCIDR: cidr, NodeIP: nodeIP}
		gw, mac := podnet.VXLAN.Gateway(p), podnet.VTEPMAC(nodeIP)
		wantNeigh[gw], wantFDB[mac] = true, true
		if neigh[gw] != mac {
			if _, err := r.Output(ctx, "ip", podnet.NeighArgs(p)...); err != nil {
				errs = append(errs, fmt.Errorf("neighbour %s of %s: %w", gw, nodeIP, err))
			}
		}
		if fdb[mac] != nodeIP {
			if _, err := r.Output(ctx, "bridge", podnet.FDBArgs(p)...); err != nil {
				errs = append(errs, fmt.Errorf("forwarding entry of %s: %w", nodeIP, err))
			}
		}
	}
	for gw := range neigh {
		if !wantNeigh[gw] {
			if _, err := r.Output(ctx, "ip", "neigh", "del", gw.String(), "dev", podnet.Device); err != nil {
				errs = append(errs, fmt.Errorf("remove neighbour %s: %w", gw, err))
			}
		}
	}
	for mac := range fdb {
		if !wantFDB[mac] && strings.HasPrefix(mac, "0e:65:") {
			if _, err := r.Output(ctx, "bridge", "fdb", "del", mac, "dev", podnet.Device); err != nil {
				errs = append(errs, fmt.Errorf("remove forwarding entry %s: %w", mac, err))
			}
		}
	}
	return errs
}
