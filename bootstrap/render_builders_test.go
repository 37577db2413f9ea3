package bootstrap

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/etcd/server/v3/embed"
	corev1 "k8s.io/api/core/v1"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/units"
)

var threeMembers = EtcdMembership{
	State: "new",
	Token: "shop-test-7f3a",
	Peers: map[string]string{
		"cp-1": "https://10.77.0.11:2380",
		"cp-2": "https://10.77.0.12:2380",
		"cp-3": "https://10.77.0.13:2380",
	},
}

func TestGoldenFiles(t *testing.T) {
	cfg := testConfig(t, "")
	etcdServers := EtcdServers("https://10.77.0.11:2379", threeMembers.ClientURLs(2379))
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	args := func(f Flags) []byte { return []byte(strings.Join(f.Args(), "\n") + "\n") }
	files := map[string][]byte{
		"etcd-no-membership.yaml":  must(EtcdConfig(cfg, EtcdMembership{})),
		"etcd-three-members.yaml":  must(EtcdConfig(cfg, threeMembers)),
		"kube-apiserver.flags":     args(APIServerFlags(cfg, etcdServers)),
		"controller-manager.flags": args(ControllerManagerFlags(cfg)),
		"scheduler.flags":          args(SchedulerFlags(cfg)),
		"kubelet.flags":            args(KubeletFlags(cfg)),
		"kubelet-config.yaml":      must(KubeletConfigYAML(KubeletConfiguration(cfg))),
		"kube-proxy-config.yaml":   must(KubeProxyConfigYAML(KubeProxyConfiguration(cfg))),
		"audit-policy.yaml":        must(AuditPolicy()),
		"encryption-config.yaml":   must(EncryptionConfig([]byte("0123456789abcdef0123456789abcdef"))),
		"ecom-agent.service":       must(units.Render(AgentUnitSpec())),
	}
	for _, s := range ComponentUnits(cfg, etcdServers) {
		files[s.Name] = must(units.Render(s))
	}
	for name, got := range files {
		t.Run(name, func(t *testing.T) { golden(t, name, got) })
	}
}

// TestEtcdConfigLoadsInEtcd feeds the rendered YAML to etcd's own config
// loader and validator, with and without a decided membership.
func TestEtcdConfigLoadsInEtcd(t *testing.T) {
	cfg := testConfig(t, "\n[etcd]\nextra_flags = { \"snapshot-count\" = \"5000\", \"heartbeat-interval\" = \"200\", \"election-timeout\" = \"2000\" }\n")
	for _, tc := range []struct {
		name    string
		m       EtcdMembership
		cluster string
		state   string
		token   string
	}{
		{"three-members", threeMembers, "cp-1=https://10.77.0.11:2380,cp-2=https://10.77.0.12:2380,cp-3=https://10.77.0.13:2380", "new", "shop-test-7f3a"},
		{"no-membership", EtcdMembership{}, "", "", ""},
		// A learner joining a running cluster: no token (etcd learns
		// the cluster from its peers).
		{"joining", EtcdMembership{State: "existing", Peers: threeMembers.Peers}, "cp-1=https://10.77.0.11:2380,cp-2=https://10.77.0.12:2380,cp-3=https://10.77.0.13:2380", "existing", "etcd-cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := EtcdConfig(cfg, tc.m)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "etcd.yaml")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			ec, err := embed.ConfigFromFile(path)
			if err != nil {
				t.Fatalf("etcd refused the config: %v\n%s", err, data)
			}
			if err := ec.Validate(); err != nil {
				t.Fatalf("etcd's validation failed: %v", err)
			}
			if ec.Name != "cp-1" || ec.Dir != EtcdDataDir {
				t.Errorf("name %q dir %q", ec.Name, ec.Dir)
			}
			if !ec.ClientTLSInfo.ClientCertAuth || !ec.PeerTLSInfo.ClientCertAuth {
				t.Error("client certificate authentication is off")
			}
			if ec.ClientTLSInfo.TrustedCAFile != PKIDir+"/etcd/ca.crt" || ec.PeerTLSInfo.CertFile != PKIDir+"/etcd/peer.crt" {
				t.Errorf("TLS files: %+v %+v", ec.ClientTLSInfo, ec.PeerTLSInfo)
			}
			for _, u := range append(ec.ListenClientUrls, ec.ListenPeerUrls...) {
				if u.Scheme != "https" {
					t.Errorf("listener %s is not TLS", u.String())
				}
			}
			if ec.SnapshotCount != 5000 || ec.TickMs != 200 || ec.ElectionMs != 2000 {
				t.Errorf("extra flags not applied: snapshot %d tick %d election %d", ec.SnapshotCount, ec.TickMs, ec.ElectionMs)
			}
			if tc.cluster != "" {
				if ec.InitialCluster != tc.cluster || ec.ClusterState != tc.state || ec.InitialClusterToken != tc.token {
					t.Errorf("membership: %q %q %q", ec.InitialCluster, ec.ClusterState, ec.InitialClusterToken)
				}
			}
		})
	}
}

func TestEtcdMembershipMustListThisNode(t *testing.T) {
	cfg := testConfig(t, "")
	m := threeMembers
	m.Peers = map[string]string{"cp-2": "https://10.77.0.12:2380"}
	if _, err := EtcdConfig(cfg, m); err == nil || !strings.Contains(err.Error(), "cp-1") {
		t.Fatalf("got %v, want an error naming this node", err)
	}
}

// tunables are flags the agent sets to a default that operators may
// override with extra_flags; every other rendered flag must be owned.
var tunables = map[string][]string{
	"kube-apiserver": {
		"audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize", "kubelet-preferred-address-types",
		"profiling", "shutdown-send-retry-after", "tls-cipher-suites", "tls-min-version",
	},
	"kube-controller-manager": {"node-cidr-mask-size", "profiling", "tls-cipher-suites"},
	"kube-scheduler":          {"profiling", "tls-cipher-suites"},
	"kubelet":                 {},
}

// TestRenderedFlagsAreOwnedOrTunable keeps config's denylist in step with
// what the renderer sets: a flag the agent sets and an operator could
// also set would silently fight.
func TestRenderedFlagsAreOwnedOrTunable(t *testing.T) {
	cfg := testConfig(t, "")
	rendered := map[string]Flags{
		"kube-apiserver":          APIServerFlags(cfg, []string{"https://127.0.0.1:2379"}),
		"kube-controller-manager": ControllerManagerFlags(cfg),
		"kube-scheduler":          SchedulerFlags(cfg),
		"kubelet":                 KubeletFlags(cfg),
	}
	for comp, flags := range rendered {
		for name := range flags {
			if !slices.Contains(config.OwnedFlags[comp], name) && !slices.Contains(tunables[comp], name) {
				t.Errorf("%s: --%s is rendered but neither owned (config.OwnedFlags) nor listed as tunable", comp, name)
			}
		}
	}
}

func TestExtraFlagsOverrideTunables(t *testing.T) {
	cfg := testConfig(t, "\n[apiserver.extra_flags]\naudit-log-maxage = \"7\"\nfeature-gates = \"Foo=true\"\n")
	f := APIServerFlags(cfg, []string{"https://127.0.0.1:2379"})
	if f["audit-log-maxage"] != "7" || f["feature-gates"] != "Foo=true" {
		t.Fatalf("extra flags not applied: %v %v", f["audit-log-maxage"], f["feature-gates"])
	}
}

func TestKubeletConfigRoundTripsStrictly(t *testing.T) {
	cfg := testConfig(t, "")
	kc := KubeletConfiguration(cfg)
	data, err := KubeletConfigYAML(kc)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKubeletConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if *back.Authentication.Anonymous.Enabled || !*back.Authentication.Webhook.Enabled {
		t.Error("anonymous auth must be off and webhook on")
	}
	if back.Authorization.Mode != "Webhook" || back.ReadOnlyPort != 0 || !back.RotateCertificates || !back.ServerTLSBootstrap {
		t.Errorf("authorization %q readOnlyPort %d rotate %v serverTLSBootstrap %v",
			back.Authorization.Mode, back.ReadOnlyPort, back.RotateCertificates, back.ServerTLSBootstrap)
	}
	if back.CgroupDriver != "systemd" || back.ClusterDomain != "cluster.local" || !slices.Equal(back.ClusterDNS, []string{"10.96.0.10"}) {
		t.Errorf("cgroup driver %q domain %q dns %v", back.CgroupDriver, back.ClusterDomain, back.ClusterDNS)
	}
	if !slices.Equal(back.TLSCipherSuites, TLSCipherSuites) {
		t.Errorf("cipher suites %v", back.TLSCipherSuites)
	}
	if _, err := ParseKubeletConfig(append(data, []byte("bogusField: 1\n")...)); err == nil {
		t.Error("strict decoding accepted an unknown field")
	}
}

// node.labels become --node-labels, sorted; node.taints the kubelet
// config's registerWithTaints; none of either, neither.
func TestKubeletRegistersWithTheNodesLabelsAndTaints(t *testing.T) {
	cfg := testConfig(t, "\n[node]\nlabels = { \"topology.kubernetes.io/zone\" = \"rack-1\", \"example.com/disk\" = \"ssd\" }\n"+
		"taints = [\"dedicated=db:NoSchedule\", \"example.com/slow:PreferNoSchedule\"]\n")
	if got, want := KubeletFlags(cfg)["node-labels"], "example.com/disk=ssd,topology.kubernetes.io/zone=rack-1"; got != want {
		t.Errorf("--node-labels %q, want %q", got, want)
	}
	data, err := KubeletConfigYAML(KubeletConfiguration(cfg))
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKubeletConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}, {Key: "example.com/slow", Effect: corev1.TaintEffectPreferNoSchedule}}
	if !slices.Equal(back.RegisterWithTaints, want) {
		t.Errorf("registerWithTaints %v, want %v", back.RegisterWithTaints, want)
	}
	plain := testConfig(t, "")
	if _, ok := KubeletFlags(plain)["node-labels"]; ok || len(KubeletConfiguration(plain).RegisterWithTaints) != 0 {
		t.Errorf("labels or taints from no config: %v %v", KubeletFlags(plain), KubeletConfiguration(plain).RegisterWithTaints)
	}
}

func TestEncryptionKeyRoundTrip(t *testing.T) {
	key, err := NewEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	data, err := EncryptionConfig(key)
	if err != nil {
		t.Fatal(err)
	}
	back, err := EncryptionKey(data)
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != string(key) {
		t.Fatal("key changed in the round trip")
	}
	if _, err := EncryptionConfig(key[:16]); err == nil {
		t.Fatal("accepted a 16-byte key")
	}
}
