// Package configtest builds configs and host roots for the tests of the
// agent's components.
package configtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
)

// Parse parses a test config and moves the node onto loopback, where the
// test can bind gossip and the RPC endpoint (a config may not name a
// loopback address: other nodes could not reach it).
func Parse(t testing.TB, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml", config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.AdvertiseAddress = netip.MustParseAddr("127.0.0.1")
	if cfg.Role == config.RoleWorker {
		// A worker asks, and gossips with, loopback only.
		cfg.Join.Servers = []string{"127.0.0.1"}
		if len(cfg.Gossip.Join) == 1 && cfg.Gossip.Join[0] == "10.77.0.11" {
			cfg.Gossip.Join = []string{"127.0.0.1"}
		}
	}
	return cfg
}

// ControlPlaneTOML is a control-plane node's config of a three-node
// cluster, with free ports on loopback for gossip and the agent's RPC
// endpoint.
func ControlPlaneTOML(t testing.TB) string {
	return fmt.Sprintf(`
cluster_name = "shop-test"
role = "control-plane"
node_name = "cp-1"
advertise_address = "10.77.0.11"
cluster_secret = "`+TestClusterSecret+`"
control_plane_key = "`+TestControlPlaneKey+`"
[gossip]
port = %d
rpc_port = %d
`, FreePort(t), FreePort(t))
}

// ControlPlane is ControlPlaneTOML parsed.
func ControlPlane(t testing.TB) *config.Config { return Parse(t, ControlPlaneTOML(t)) }

// TestControlPlaneKey is the control-plane key of ControlPlaneTOML.
const TestControlPlaneKey = "test-cp-key-fedcba9876543210fedcba98765"

// Worker is a worker's config beside ControlPlane's nodes.
func Worker(t testing.TB) *config.Config { return Parse(t, WorkerOf(ControlPlaneTOML(t), "w-1")) }

// TestClusterSecret is the cluster secret of ControlPlaneTOML.
const TestClusterSecret = "test-secret-0123456789abcdef0123456789"

// TestJoinToken is the join token of WorkerOf's configs: the right shape,
// in no cluster's list.
const TestJoinToken = "EA1::sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef::0123456789ab.0123456789abcdef0123456789abcdef"

// WorkerOf turns a control-plane node's config into a worker's named
// name: the role changed, the secrets removed (workers hold none), a join
// token and the control-plane node's address as its join server added.
func WorkerOf(controlPlaneTOML, name string) string {
	var out []string
	for _, line := range strings.Split(controlPlaneTOML, "\n") {
		switch {
		case strings.HasPrefix(line, "control_plane_key"), strings.HasPrefix(line, "cluster_secret"):
		case strings.HasPrefix(line, "role = "):
			out = append(out, `role = "worker"`)
		case strings.HasPrefix(line, "node_name = "):
			out = append(out, fmt.Sprintf("node_name = %q", name))
		default:
			out = append(out, line)
		}
	}
	out = append(out, "[join]", `token = "`+TestJoinToken+`"`, `servers = ["10.77.0.11"]`)
	return strings.Join(out, "\n")
}

// handedOut are the ports FreePort returned: a port closed again is free
// for the system, and would otherwise be picked twice.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a TCP and UDP port free on 127.0.0.1 right now, never
// one it returned before in this process. It is picked below the kernel's
// ephemeral range: a port from :0 is free now, but any process's next
// outgoing connection may take it as its source port before the test
// binds it (seen: an agent's etcd failing with "bind: address already in
// use" while other packages' tests ran beside it).
func FreePort(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	for range 200 {
		addr := "127.0.0.1:0"
		if low > fixedPortsFrom+1000 {
			addr = fmt.Sprintf("127.0.0.1:%d", fixedPortsFrom+rand.IntN(low-fixedPortsFrom))
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		_ = pc.Close()
		handedOut.Lock()
		fresh := !handedOut.ports[port]
		handedOut.ports[port] = true
		handedOut.Unlock()
		if fresh {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// Root is a host root in a temporary directory.
func Root(t testing.TB) *hostfs.Root {
	t.Helper()
	r, err := hostfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fixedPortsFrom is the lowest port FreePort picks.
const fixedPortsFrom = 10000

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// by default), 0 when it cannot be read.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	var low, high int
	if _, err := fmt.Sscan(string(data), &low, &high); err != nil {
		return 0
	}
	return low
}
