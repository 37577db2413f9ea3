package gossip

import (
	"testing"

	"github.com/google/uuid"

	"github.com/ecom-platform/ecom-agent/config"
)

// FuzzDecodeMeta: whatever a peer gossips, decoding never panics, and
// metadata it accepts has a valid node name, a UUID node ID and
// printable text only (what `status` and the logs show).
func FuzzDecodeMeta(f *testing.F) {
	good, err := encodeMeta(Meta{NodeID: "0b7e3c9e-8f63-4b44-9d6c-1c7d3f0a2b11", Role: config.RoleControlPlane, Expect: 3,
		Phase: "api-ready", Version: "0.1.0", ClusterName: "shop", Counter: 7})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("cp-1", good)
	f.Add("cp-1", []byte(`{"id":"not-a-uuid"}`))
	f.Add("\x1b[31mcp-1", good)
	f.Add("cp-1", []byte(`{"id":"0b7e3c9e-8f63-4b44-9d6c-1c7d3f0a2b11","phase":"\u001b[2J"}`))
	f.Add("cp-1", []byte(`{"id":"0b7e3c9e-8f63-4b44-9d6c-1c7d3f0a2b11","rpc":"[fe80::1%eth0]:7947"}`))
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, name string, b []byte) {
		m, err := decodeMeta(name, b)
		if err != nil {
			return
		}
		if !config.ValidNodeName(m.NodeName) {
			t.Errorf("accepted node name %q", m.NodeName)
		}
		if _, err := uuid.Parse(m.NodeID); err != nil {
			t.Errorf("accepted node ID %q", m.NodeID)
		}
		for _, s := range []string{m.Phase, m.Version, m.ClusterName} {
			if !printable(s) {
				t.Errorf("accepted unprintable %q", s)
			}
		}
	})
}
