package config

import (
	"net/netip"
	"testing"
)

// TestVIPIsTheDefaultEndpoint: a VIP is the cluster's endpoint unless
// control_plane_endpoint names another.
func TestVIPIsTheDefaultEndpoint(t *testing.T) {
	for _, tc := range []struct{ name, extra, want string }{
		{"no VIP", ``, ""},
		{"a VIP", "[control_plane_vip]\naddress = \"10.0.0.100\"", "10.0.0.100"},
		{"a VIP and an endpoint", "control_plane_endpoint = \"k8s.example.com\"\n[control_plane_vip]\naddress = \"10.0.0.100\"", "k8s.example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(doc(append(base[:len(base):len(base)], tc.extra)...)), "config.toml", oneHost())
			if err != nil {
				t.Fatal(err)
			}
			if c.ControlPlaneEndpoint != tc.want {
				t.Errorf("control_plane_endpoint %q, want %q", c.ControlPlaneEndpoint, tc.want)
			}
			if tc.extra != "" && tc.want != "" && c.ControlPlaneVIP.Address != netip.MustParseAddr("10.0.0.100") {
				t.Errorf("VIP %v", c.ControlPlaneVIP.Address)
			}
		})
	}
}

// On the node that holds the VIP, the address detection leaves it out:
// a restarted holder finds its own address, not two.
func TestDetectionSkipsTheVIP(t *testing.T) {
	file := doc(append(base[:len(base):len(base)], "[control_plane_vip]", `address = "10.0.0.100"`)...)
	c, err := Parse([]byte(file), "config.toml", hostOpts("cp-1", "10.0.0.11", "10.0.0.100"))
	if err != nil {
		t.Fatal(err)
	}
	if c.AdvertiseAddress != netip.MustParseAddr("10.0.0.11") {
		t.Errorf("advertise_address %s", c.AdvertiseAddress)
	}
}
