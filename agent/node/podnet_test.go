package node

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ecom-platform/ecom-agent/podnet"
)

// fakeVXLAN is the VXLAN device of fakeExec's kernel.
type fakeVXLAN struct {
	local, mac, addr string
	mtu              int
	up               bool
	neigh            map[string]string // gateway -> MAC
	fdb              map[string]string // MAC -> node address
}

// vxlanCommand answers the commands on the VXLAN device and the host's
// addresses (eth0 with 127.0.0.1, the test config's advertise_address,
// MTU 9000, and no other); ok is false for other commands.
func (f *fakeExec) vxlanCommand(line string, args []string) (out []byte, err error, ok bool) {
	dev := podnet.Device
	v := f.vxlan
	switch {
	case line == "ip -4 -json addr show":
		return []byte(`[{"ifname":"eth0","mtu":9000,"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":32}]}]`), nil, true
	case line == "ip -json -d link show dev "+dev:
		if v == nil {
			return nil, errors.New(`exit status 1: Device "` + dev + `" does not exist.`), true
		}
		flags := []string{"BROADCAST"}
		if v.up {
			flags = append(flags, "UP")
		}
		out, err := json.Marshal([]map[string]any{{"ifname": dev, "flags": flags, "mtu": v.mtu, "address": v.mac,
			"linkinfo": map[string]any{"info_kind": "vxlan", "info_data": map[string]any{"id": 1, "local": v.local, "port": 8472}}}})
		return out, err, true
	case line == "ip -4 -json addr show dev "+dev:
		out, err := json.Marshal([]map[string]any{{"ifname": dev, "mtu": v.mtu, "addr_info": []map[string]any{{"family": "inet", "local": strings.TrimSuffix(v.addr, "/32"), "prefixlen": 32}}}})
		return out, err, true
	case line == "ip -json neigh show dev "+dev:
		var list []map[string]any
		for gw, mac := range v.neigh {
			list = append(list, map[string]any{"dst": gw, "lladdr": mac, "state": []string{"PERMANENT"}})
		}
		out, err := json.Marshal(list)
		return out, err, true
	case line == "bridge -json fdb show dev "+dev:
		var list []map[string]any
		for mac, ip := range v.fdb {
			list = append(list, map[string]any{"mac": mac, "dst": ip, "state": "permanent"})
		}
		out, err := json.Marshal(list)
		return out, err, true
	case strings.HasPrefix(line, "ip link add "+dev+" "):
		f.vxlan = &fakeVXLAN{local: args[8], neigh: map[string]string{}, fdb: map[string]string{}}
	case strings.HasPrefix(line, "ip link set "+dev+" address "):
		v.mac, v.up = args[4], true
		v.mtu, _ = strconv.Atoi(args[6])
	case line == "ip link delete "+dev:
		f.vxlan = nil
	case strings.HasPrefix(line, "ip addr replace ") && strings.HasSuffix(line, " dev "+dev):
		v.addr = args[2]
	case strings.HasPrefix(line, "ip neigh replace "):
		v.neigh[args[2]] = args[4]
	case strings.HasPrefix(line, "ip neigh del "):
		delete(v.neigh, args[2])
	case strings.HasPrefix(line, "bridge fdb replace "):
		v.fdb[args[2]] = args[6]
	case strings.HasPrefix(line, "bridge fdb del "):
		delete(v.fdb, args[2])
	default:
		return nil, nil, false
	}
	return nil, nil, true
}

// The VXLAN backend: the device is made on the interface of the node's
// address with the MTU less 50 (which the CNI config gives the pods),
// each peer gets a neighbour, a forwarding entry and a route through the
// device; a second step changes nothing; entries deleted by hand, a
// device deleted by hand and a node that goes are all brought in step.
func TestNodeNetworkVXLAN(t *testing.T) {
	n, ex, cs := networkNode(t,
		testNode("w-1", "10.244.5.0/24", "127.0.0.1", true),
		testNode("cp-2", "10.244.1.0/24", "10.78.0.12", true),
		testNode("cp-3", "10.244.2.0/24", "10.78.0.13", true),
	)
	n.d.Config.Network.Backend = "vxlan"
	ctx := context.Background()
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	got := ex.lines()
	slices.Sort(got)
	want := []string{
		"bridge fdb replace 0e:65:0a:4e:00:0c dev ecom-vxlan dst 10.78.0.12 self permanent",
		"bridge fdb replace 0e:65:0a:4e:00:0d dev ecom-vxlan dst 10.78.0.13 self permanent",
		"ip addr replace 10.244.5.0/32 dev ecom-vxlan",
		"ip link add ecom-vxlan type vxlan id 1 local 127.0.0.1 dev eth0 dstport 8472 nolearning",
		"ip link set ecom-vxlan address 0e:65:7f:00:00:01 mtu 8950 up",
		"ip neigh replace 10.244.1.0 lladdr 0e:65:0a:4e:00:0c dev ecom-vxlan nud permanent",
		"ip neigh replace 10.244.2.0 lladdr 0e:65:0a:4e:00:0d dev ecom-vxlan nud permanent",
		"ip route replace 10.244.1.0/24 via 10.244.1.0 dev ecom-vxlan onlink",
		"ip route replace 10.244.2.0/24 via 10.244.2.0 dev ecom-vxlan onlink",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ran:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	conf, err := n.d.Root.ReadFile("/etc/cni/net.d/10-ecom-agent.conflist")
	if err != nil || !strings.Contains(string(conf), `"mtu": 8950`) {
		t.Errorf("CNI config (%v):\n%s", err, conf)
	}
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ex.lines(); len(got) != 0 {
		t.Errorf("a second step ran %q", got)
	}

	// Entries deleted by hand come back.
	ex.mu.Lock()
	delete(ex.vxlan.neigh, "10.244.1.0")
	delete(ex.vxlan.fdb, "0e:65:0a:4e:00:0d")
	ex.mu.Unlock()
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := ex.lines(), 2; len(got) != want {
		t.Errorf("restoring two entries ran %q", got)
	}

	// The device deleted by hand (its routes go with it): all comes back.
	ex.mu.Lock()
	ex.vxlan = nil
	ex.routes = nil
	ex.mu.Unlock()
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ex.lines(); len(got) != len(want) {
		t.Errorf("after the device was deleted ran:\n%s", strings.Join(got, "\n"))
	}

	// A node that goes takes its route, neighbour and forwarding entry.
	if err := cs.CoreV1().Nodes().Delete(ctx, "cp-3", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	got = ex.lines()
	slices.Sort(got)
	if want := []string{"bridge fdb del 0e:65:0a:4e:00:0d dev ecom-vxlan", "ip neigh del 10.244.2.0 dev ecom-vxlan", "ip route del 10.244.2.0/24"}; !slices.Equal(got, want) {
		t.Errorf("a node gone ran %q, want %q", got, want)
	}

	// Back to host-gw: the device goes, routes go through the nodes.
	n.d.Config.Network.Backend = "host-gw"
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	got = ex.lines()
	if want := []string{"ip link delete ecom-vxlan", "ip route replace 10.244.1.0/24 via 10.78.0.12"}; !slices.Equal(got, want) {
		t.Errorf("switched to host-gw ran %q, want %q", got, want)
	}
}
