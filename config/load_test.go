package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// testControlPlaneKey is the control-plane key of the tests' control-plane configs.
const testControlPlaneKey = "fedcba9876543210fedcba9876543210"

// hostOpts describes a host with the given hostname and addresses.
func hostOpts(hostname string, addrs ...string) LoadOptions {
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	return LoadOptions{
		Hostname:  func() (string, error) { return hostname, nil },
		HostAddrs: func() ([]netip.Addr, error) { return as, nil },
		Root:      "/nonexistent-test-root",
	}
}

// oneHost is a host named cp-1 with the single address 10.0.0.11.
func oneHost() LoadOptions { return hostOpts("cp-1", "10.0.0.11") }

// doc joins lines into a file, so tests can count lines.
// A control-plane node's file without a control-plane key gets one on the
// line after its cluster secret (the key is not what most tests are
// about): the lines after that one move down by one (see line).
func doc(lines ...string) string {
	cp, hasKey, at := false, false, -1
	for i, l := range lines {
		cp = cp || l == `role = "control-plane"`
		hasKey = hasKey || strings.HasPrefix(l, "control_plane_key")
		if strings.HasPrefix(l, "cluster_secret") && at < 0 {
			at = i + 1
		}
	}
	if cp && !hasKey && at >= 0 {
		lines = slices.Insert(slices.Clone(lines), at, `control_plane_key = "`+testCPKey+`"`)
	}
	return strings.Join(lines, "\n") + "\n"
}

// line is where line n of the lines given to doc ends up in its file.
func line(file string, n int) int {
	if n > 3 && strings.Contains(file, testCPKey) {
		return n + 1
	}
	return n
}

// workerJoin is a worker's [join] table, the last lines of its file.
var workerJoin = []string{
	`[join]`,
	`token = "` + testJoinToken + `"`,
	`servers = ["10.0.0.12", "10.0.0.13:7950"]`,
}

// testJoinToken is a join token of the right shape.
const testJoinToken = "EA1::sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef::0123456789ab.0123456789abcdef0123456789abcdef"

// testCPKey is the control-plane key doc adds.
const testCPKey = "cp-key-fedcba9876543210fedcba9876543210"

// base is the smallest valid file; its three lines come first in most tests.
var base = []string{
	`cluster_name = "shop"`,
	`role = "control-plane"`,
	`cluster_secret = "` + testSecret + `"`,
}

// problems returns the problems of err, failing the test if err is not an
// *Error.
func problems(t *testing.T, err error) []Problem {
	t.Helper()
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *config.Error", err, err)
	}
	return ce.Problems
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(doc(base...)), "config.toml", hostOpts("Node-1.Example.COM", "10.0.0.11", "fe80::1", "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		ClusterName:       "shop",
		Role:              RoleControlPlane,
		NodeName:          "node-1.example.com",
		AdvertiseAddress:  netip.MustParseAddr("10.0.0.11"),
		ClusterSecret:     testSecret,
		ControlPlaneKey:   testCPKey,
		Expect:            3,
		KubernetesVersion: "v1.37.2",
		Gossip:            Gossip{Port: 7946, RPCPort: 7947},
		Join:              Join{Port: 7949},
		Network: Network{
			ServiceCIDR:   netip.MustParsePrefix("10.96.0.0/12"),
			PodCIDR:       netip.MustParsePrefix("10.244.0.0/16"),
			ClusterDomain: "cluster.local",
			Policy:        true,
			Backend:       "host-gw",
		},
		PKI: PKI{
			KeyAlgorithm: KeyECDSAP256,
			CAValidity:   Duration{87600 * time.Hour},
			CertValidity: Duration{8760 * time.Hour},
			RenewBefore:  Duration{720 * time.Hour},
		},
		Binaries: Binaries{
			KubeAPIServer:         "/usr/bin/kube-apiserver",
			KubeControllerManager: "/usr/bin/kube-controller-manager",
			KubeScheduler:         "/usr/bin/kube-scheduler",
			Kubelet:               "/usr/bin/kubelet",
			KubeProxy:             "/usr/bin/kube-proxy",
			Containerd:            "/usr/bin/containerd",
			Ctr:                   "/usr/bin/ctr",
		},
		Etcd: Etcd{ClientPort: 2379, PeerPort: 2380, ReplaceDeadAfter: Duration{5 * time.Minute},
			Snapshots: Snapshots{Interval: Duration{12 * time.Hour}, Retention: 5, Dir: "/var/lib/ecom-agent/snapshots"}},
		APIServer: APIServer{Port: 6443, ReadyTimeout: Duration{5 * time.Minute}},
		Kubelet:   Kubelet{ContainerRuntimeEndpoint: "unix:///run/containerd/containerd.sock", ResolvConf: "/etc/resolv.conf"},
		Node:      Node{ControlPlaneTaint: TaintPreferNoSchedule},
		Seed:      Seed{Enabled: true, ImageRegistry: DefaultImageRegistry},
		AddOns:    AddOns{DNS: true, Storage: true, Metrics: true, StorageDir: "/var/lib/ecom-agent-volumes"},
		Metrics:   Metrics{Address: "127.0.0.1:7948"},
	}
	if diff := cmp.Diff(want, c, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if !c.IsControlPlane() {
		t.Error("IsControlPlane() = false for a control-plane node")
	}
	if got := c.APIServerServiceIP().String(); got != "10.96.0.1" {
		t.Errorf("APIServerServiceIP() = %s, want 10.96.0.1", got)
	}
	if got := c.ClusterDNSIP().String(); got != "10.96.0.10" {
		t.Errorf("ClusterDNSIP() = %s, want 10.96.0.10", got)
	}
	if string(c.Secret()) != testSecret {
		t.Error("Secret() does not return cluster_secret")
	}
}

func TestServiceIPs(t *testing.T) {
	for _, tc := range []struct{ cidr, api, dns string }{
		{"10.96.0.0/12", "10.96.0.1", "10.96.0.10"},
		{"172.16.255.240/28", "172.16.255.241", "172.16.255.250"},
		{"fd00:10:96::/112", "fd00:10:96::1", "fd00:10:96::a"},
	} {
		c := &Config{Network: Network{ServiceCIDR: netip.MustParsePrefix(tc.cidr)}}
		if got := c.APIServerServiceIP().String(); got != tc.api {
			t.Errorf("%s: APIServerServiceIP() = %s, want %s", tc.cidr, got, tc.api)
		}
		if got := c.ClusterDNSIP().String(); got != tc.dns {
			t.Errorf("%s: ClusterDNSIP() = %s, want %s", tc.cidr, got, tc.dns)
		}
	}
}

func TestAdvertiseAddressFromHost(t *testing.T) {
	for _, tc := range []struct {
		name  string
		addrs []string
		want  string // address picked, or a substring of the problem
		ok    bool
	}{
		{"single", []string{"192.168.1.20"}, "192.168.1.20", true},
		{"ignores loopback, link-local and other family", []string{"127.0.0.1", "fe80::1", "2001:db8::5", "192.168.1.20"}, "192.168.1.20", true},
		{"ignores CNI and service addresses", []string{"192.168.1.20", "10.244.3.1", "10.96.0.1"}, "192.168.1.20", true},
		{"several", []string{"192.168.1.20", "10.0.0.5"}, "set advertise_address to one of: 192.168.1.20, 10.0.0.5", false},
		{"none", []string{"127.0.0.1", "fe80::1"}, "no usable IPv4 address", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(doc(base...)), "config.toml", hostOpts("cp-1", tc.addrs...))
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if got := c.AdvertiseAddress.String(); got != tc.want {
					t.Errorf("advertise address = %s, want %s", got, tc.want)
				}
				return
			}
			ps := problems(t, err)
			if len(ps) != 1 || ps[0].Key != "advertise_address" || !strings.Contains(ps[0].Msg, tc.want) {
				t.Errorf("problems = %+v, want one about advertise_address containing %q", ps, tc.want)
			}
		})
	}
}

func TestNodeNameFromHostname(t *testing.T) {
	_, err := Parse([]byte(doc(base...)), "config.toml", hostOpts("web_01", "10.0.0.11"))
	ps := problems(t, err)
	if len(ps) != 1 || ps[0].Key != "node_name" || ps[0].Line != 0 ||
		!strings.Contains(ps[0].Msg, `hostname "web_01"`) || !strings.Contains(ps[0].Msg, "set node_name") {
		t.Errorf("problems = %+v, want one saying the hostname is no node name", ps)
	}

	// A valid node_name in the file makes the hostname irrelevant.
	c, err := Parse([]byte(doc(append(base, `node_name = "web-01"`)...)), "config.toml", hostOpts("web_01", "10.0.0.11"))
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "web-01" {
		t.Errorf("node name = %q, want web-01", c.NodeName)
	}
}

func TestNoHostInformation(t *testing.T) {
	_, err := Parse([]byte(doc(base...)), "config.toml", LoadOptions{})
	ps := problems(t, err)
	keys := map[string]bool{}
	for _, p := range ps {
		keys[p.Key] = true
	}
	if len(ps) != 2 || !keys["node_name"] || !keys["advertise_address"] {
		t.Errorf("problems = %+v, want node_name and advertise_address required", ps)
	}
}

// exampleRoot returns a root holding the example's cluster secret file.
func exampleRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	p := filepath.Join(root, "etc/ecom-agent/cluster-secret")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/ecom-agent/control-plane-key"), []byte(testControlPlaneKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestExampleLoads(t *testing.T) {
	opts := oneHost()
	opts.Root = exampleRoot(t)
	c, err := Load("../packaging/config.toml", opts)
	if err != nil {
		t.Fatal(err)
	}
	if !c.IsControlPlane() || c.AdvertiseAddress.String() != "10.0.0.11" || string(c.Secret()) != testSecret {
		t.Errorf("example loaded as %+v", c)
	}
}

// TestExampleShowsDefaults uncomments every "# key = value" line of the
// example that sets a key with a default and checks that the result loads
// to the same config: the example shows the real defaults.
func TestExampleShowsDefaults(t *testing.T) {
	data, err := os.ReadFile("../packaging/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	noDefault := map[string]bool{"node_name": true, "advertise_address": true, "cluster_secret": true,
		"control_plane_key": true, "gossip.join": true, "apiserver.extra_sans": true,
		"join.token": true, "join.token_file": true, "join.servers": true, "node.labels": true, "node.taints": true,
		"control_plane_endpoint": true, "control_plane_vip.address": true, "control_plane_vip.interface": true}
	known := map[string]bool{}
	for _, k := range knownKeys() {
		known[k] = true
	}
	header := regexp.MustCompile(`^\[([a-z_.]+)\]$`)
	setting := regexp.MustCompile(`^# ([a-z_]+) = (.*)$`)
	plain := regexp.MustCompile(`^([a-z_]+) = `)
	table, lines, seen := "", strings.Split(string(data), "\n"), map[string]bool{}
	for i, line := range lines {
		if m := header.FindStringSubmatch(line); m != nil {
			table = m[1] + "."
			seen[m[1]] = true
		} else if m := setting.FindStringSubmatch(line); m != nil && known[table+m[1]] {
			seen[table+m[1]] = true
			if !noDefault[table+m[1]] {
				lines[i] = strings.TrimPrefix(line, "# ")
			}
		} else if m := plain.FindStringSubmatch(line); m != nil {
			seen[table+m[1]] = true
		}
	}
	for _, k := range knownKeys() {
		if !seen[k] && !strings.HasSuffix(k, "extra_flags") {
			t.Errorf("the example does not show key %s", k)
		}
	}
	opts := oneHost()
	opts.Root = exampleRoot(t)
	want, err := Parse(data, "config.toml", opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse([]byte(strings.Join(lines, "\n")), "uncommented.toml", opts)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("uncommented defaults differ from the defaults (-commented +uncommented):\n%s", diff)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "config.toml"), oneHost())
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want an fs.ErrNotExist", err)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Errorf("a missing file is reported as %T, want a *config.Error", err)
	}
	if !strings.HasSuffix(err.Error(), "config.toml: cannot read the config file: no such file or directory") {
		t.Errorf("error = %v", err)
	}
}

// TestZeroOptions checks that a file naming everything host-specific loads
// without any host information.
func TestZeroOptions(t *testing.T) {
	file := doc(append(base[:len(base):len(base)], `node_name = "cp-1"`, `advertise_address = "10.77.0.11"`)...)
	if _, err := Parse([]byte(file), "config.toml", LoadOptions{}); err != nil {
		t.Error(err)
	}
}
