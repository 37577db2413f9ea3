package podnet

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ecom-platform/ecom-agent/config"
)

// The config's names of the backends are these.
func TestBackendNames(t *testing.T) {
	if string(HostGW) != config.BackendHostGW || string(VXLAN) != config.BackendVXLAN {
		t.Fatal("podnet and config name the backends differently")
	}
}

// What `ip -json` and `bridge -json` print for a device made with
// Link.CreateArgs, a peer added with NeighArgs, FDBArgs and RouteArgs
// (iproute2 6.1, Debian 12).
const (
	linkJSON  = `[{"ifindex":4,"ifname":"ecom-vxlan","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1450,"address":"0e:65:0a:09:00:02","linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"local":"10.9.0.2","link":"d0","port_range":{"low":0,"high":0},"port":8472,"learning":false}}}]`
	addrJSON  = `[{"ifindex":4,"ifname":"ecom-vxlan","mtu":1450,"addr_info":[{"family":"inet","local":"10.244.3.0","prefixlen":32},{"family":"inet6","local":"fe80::c65:aff:fe09:2","prefixlen":64}]}]`
	neighJSON = `[{"dst":"10.244.4.0","lladdr":"0e:65:0a:09:00:03","state":["PERMANENT"]},{"dst":"10.244.9.0","lladdr":"0e:65:0a:09:00:09","state":["STALE"]}]`
	fdbJSON   = `[{"mac":"0e:65:0a:09:00:03","dst":"10.9.0.3","flags":["self"],"state":"permanent"}]`
)

func TestCommands(t *testing.T) {
	p := Peer{PodCIDR: netip.MustParsePrefix("10.244.4.0/24"), NodeIP: netip.MustParseAddr("10.9.0.3")}
	for _, c := range []struct{ got, want []string }{
		{HostGW.RouteArgs(p), strings.Fields("route replace 10.244.4.0/24 via 10.9.0.3")},
		{VXLAN.RouteArgs(p), strings.Fields("route replace 10.244.4.0/24 via 10.244.4.0 dev ecom-vxlan onlink")},
		{NeighArgs(p), strings.Fields("neigh replace 10.244.4.0 lladdr 0e:65:0a:09:00:03 dev ecom-vxlan nud permanent")},
		{FDBArgs(p), strings.Fields("fdb replace 0e:65:0a:09:00:03 dev ecom-vxlan dst 10.9.0.3 self permanent")},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	l := NewLink("d0", 1500, netip.MustParseAddr("10.9.0.2"), netip.MustParsePrefix("10.244.3.0/24"))
	var got []string
	for _, a := range l.CreateArgs() {
		got = append(got, strings.Join(a, " "))
	}
	want := []string{
		"link add ecom-vxlan type vxlan id 1 local 10.9.0.2 dev d0 dstport 8472 nolearning",
		"link set ecom-vxlan address 0e:65:0a:09:00:02 mtu 1450 up",
		"addr replace 10.244.3.0/32 dev ecom-vxlan",
	}
	if !slices.Equal(got, want) {
		t.Errorf("create:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if HostGW.MTU(1500) != 1500 || VXLAN.MTU(9000) != 8950 {
		t.Error("MTU")
	}
}

func TestKernelReads(t *testing.T) {
	l := NewLink("d0", 1500, netip.MustParseAddr("10.9.0.2"), netip.MustParsePrefix("10.244.3.0/24"))
	k, err := ParseLink([]byte(linkJSON), []byte(addrJSON))
	if err != nil {
		t.Fatal(err)
	}
	if d := l.Differs(k); d != "" {
		t.Errorf("the device as made differs: %s (%+v)", d, k)
	}
	if d := l.Differs(KernelLink{}); d != "missing" {
		t.Errorf("no device: %q", d)
	}
	k2, _ := ParseLink([]byte(strings.Replace(linkJSON, `"UP",`, "", 1)), []byte("[]"))
	if d := l.Differs(k2); d != "down, no address 10.244.3.0/32" {
		t.Errorf("down, no address: %q", d)
	}
	k3, _ := ParseLink([]byte(strings.Replace(linkJSON, `"local":"10.9.0.2"`, `"local":"10.9.0.7"`, 1)), []byte(addrJSON))
	if d := l.Differs(k3); !strings.HasPrefix(d, "vni 1, port 8472, local 10.9.0.7") {
		t.Errorf("another local address: %q", d)
	}
	if _, err := ParseLink([]byte(`[{"ifname":"ecom-vxlan","linkinfo":{"info_kind":"bridge"}}]`), nil); err == nil || !strings.Contains(err.Error(), "ip link delete ecom-vxlan") {
		t.Errorf("a bridge of that name: %v", err)
	}
	n, err := Neighbours([]byte(neighJSON))
	if err != nil || len(n) != 1 || n[netip.MustParseAddr("10.244.4.0")] != "0e:65:0a:09:00:03" {
		t.Errorf("neighbours %v %v", n, err)
	}
	f, err := Forwarding([]byte(fdbJSON))
	if err != nil || f["0e:65:0a:09:00:03"] != netip.MustParseAddr("10.9.0.3") {
		t.Errorf("fdb %v %v", f, err)
	}
	a, err := ParseAddrs([]byte(`[{"ifname":"lo","mtu":65536,"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},{"ifname":"eth0","mtu":1500,"addr_info":[{"family":"inet","local":"10.77.1.11","prefixlen":24}]}]`))
	if err != nil || len(a) != 2 || a[1] != (IfAddr{"eth0", 1500, netip.MustParsePrefix("10.77.1.11/24")}) {
		t.Errorf("addrs %+v %v", a, err)
	}
}
