package testhost

import (
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	const id = "0a1b2c"
	for _, link := range []string{bridgeName(id), vethName(id, 1), vethName(id, maxHosts), routerLinkName(id)} {
		if len(link) > 15 {
			t.Errorf("link name %q longer than Linux's 15 bytes", link)
		}
		if got := envIDOfLink(link); got != id {
			t.Errorf("envIDOfLink(%q) = %q, want %q", link, got, id)
		}
	}
	if got := envIDOfNetns(netnsName(id, "demo12")); got != id {
		t.Errorf("envIDOfNetns = %q, want %q", got, id)
	}
	for _, other := range []string{"eth0", "ect0a1b2", "ect0a1b2cbr0", "ect0A1B2Cbr", "ect0a1b2cv", "lo", "ecomtest-0a1b2c", "ecomtest-xyz123-h1"} {
		if envIDOfLink(other) != "" || envIDOfNetns(other) != "" {
			t.Errorf("%q taken for an environment's", other)
		}
	}
	if got := hostAddr(7, 3).String(); got != "10.77.7.13" {
		t.Errorf("hostAddr = %s", got)
	}
	if got := segmentHostAddr(7, 3, SegmentB).String(); got != "10.78.7.13" {
		t.Errorf("segmentHostAddr = %s", got)
	}
	if a, b := routerAddr(7, SegmentA).String(), routerAddr(7, SegmentB).String(); a != "10.77.7.2" || b != "10.78.7.1" {
		t.Errorf("router %s %s", a, b)
	}
	if got := envIDOfNetns(netnsName(id, "router")); got != id {
		t.Errorf("the router's netns: %q", got)
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, ok := range []string{"h", "demo", "etcd-node"} {
		if err := checkPrefix(ok); err != nil {
			t.Errorf("checkPrefix(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1h", "Demo", "a_b", "a/b", strings.Repeat("a", maxPrefixLen+1)} {
		if err := checkPrefix(bad); err == nil {
			t.Errorf("checkPrefix(%q) accepted", bad)
		}
	}
}

func TestHostsFile(t *testing.T) {
	st := &envState{Subnet: 3, Hosts: []*hostState{{Name: "h1", Addr: "10.77.3.11"}, {Name: "h2", Addr: "10.77.3.12"}}}
	got := string(hostsFile(st))
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "10.77.3.1\ttesthost-gateway\n", "10.77.3.11\th1\n", "10.77.3.12\th2\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("hosts file lacks %q:\n%s", want, got)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/a\040b\011c`); got != "/a b\tc" {
		t.Errorf("unescapeMount = %q", got)
	}
}
