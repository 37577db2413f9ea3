package workercreds

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/gossip"
)

// A worker gets certificates for its own name only: an alive worker of
// the gossip view, asking from the address it gossips from.
func TestCheckWorkerCaller(t *testing.T) {
	ms := []gossip.Member{
		{Name: "w-1", Addr: netip.MustParseAddrPort("10.77.0.21:7946"), State: gossip.StateAlive, Meta: gossip.Meta{Role: config.RoleWorker}},
		{Name: "w-2", Addr: netip.MustParseAddrPort("10.77.0.22:7946"), State: gossip.StateDead, Meta: gossip.Meta{Role: config.RoleWorker}},
		{Name: "cp-1", Addr: netip.MustParseAddrPort("10.77.0.11:7946"), State: gossip.StateAlive, Meta: gossip.Meta{Role: config.RoleControlPlane}},
	}
	for _, tc := range []struct {
		name, from, want string
	}{
		{"w-1", "10.77.0.21", ""},
		{"w-1", "10.77.0.22", `node "w-1" gossips from 10.77.0.21 but asked from 10.77.0.22`},
		{"w-2", "10.77.0.22", `node "w-2" is not an alive member`},
		{"w-9", "10.77.0.21", `node "w-9" is not an alive member`},
		{"cp-1", "10.77.0.11", `node "cp-1" is not a worker`},
	} {
		err := checkWorkerCaller(ms, tc.name, netip.MustParseAddr(tc.from))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s from %s: refused: %v", tc.name, tc.from, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s from %s: got %v, want %q", tc.name, tc.from, err, tc.want)
		}
	}
}
