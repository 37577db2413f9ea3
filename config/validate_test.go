package config

import (
	"fmt"
	"strings"
	"testing"
)

// TestBadInput checks that each bad file yields a problem naming the key
// and its line, with a message that says what to fix.
func TestBadInput(t *testing.T) {
	withBase := func(lines ...string) string { return doc(append(base[:len(base):len(base)], lines...)...) }
	for _, tc := range []struct {
		name string
		file string
		key  string
		line int
		msg  string
	}{
		// Unknown keys.
		{"unknown top-level key", withBase(`colour = "blue"`), "colour", 4, "unknown key; check the spelling"},
		{"unknown nested key", withBase(`[apiserver]`, `extra_san = ["k8s.example.com"]`),
			"apiserver.extra_san", 5, `unknown key; did you mean "apiserver.extra_sans"?`},
		{"top-level key after a table", withBase(`[gossip]`, `expect = 3`),
			"gossip.expect", 5, `did you mean "expect"? (top-level keys must come before the first [table] header)`},
		{"nested key at top level", withBase(`extra_sans = ["k8s.example.com"]`),
			"extra_sans", 4, `did you mean "apiserver.extra_sans"? (it belongs under [apiserver])`},
		{"misspelled table", withBase(`[apiservr]`, `port = 6443`), "apiservr", 4, `did you mean "apiserver"?`},
		{"dashes for underscores", withBase(`kubernetes-version = "v1.37.2"`), "kubernetes-version", 4, `did you mean "kubernetes_version"?`},
		{"key case differs", withBase(`[Gossip]`, `port = 7946`), "Gossip", 4, `did you mean "gossip"?`},
		{"unknown key in dotted table", withBase(`pki.key_algo = "rsa-2048"`), "pki.key_algo", 4, `did you mean "pki.key_algorithm"?`},

		// The profiler only on loopback.
		{"pprof on every address", withBase(`[metrics]`, `address = ":7948"`, `pprof = true`), "metrics.pprof", 6, "not a loopback address"},
		{"pprof on a node address", withBase(`[metrics]`, `address = "10.0.0.11:7948"`, `pprof = true`), "metrics.pprof", 6, "turn pprof off"},

		// Wrong types.
		{"string for int", withBase(`expect = "3"`), "expect", 4, "expected an integer, got a string; write it without quotes: expect = 3"},
		{"int for string", withBase(`kubernetes_version = 1`), "kubernetes_version", 4, "expected a string, got an integer; put it in double quotes"},
		{"array for string", withBase(`node_name = ["a"]`), "node_name", 4, "expected a string, got an array"},
		{"string for array", withBase(`[gossip]`, `join = "10.0.0.12"`), "gossip.join", 5, "expected an array of strings, got a string"},
		{"int in array", withBase(`[apiserver]`, `extra_sans = ["a.example.com", 7]`), "apiserver.extra_sans", 5, "element 2 is an integer"},
		{"string for table", withBase(`network = "10.0.0.0/8"`), "network", 4, "expected a table, got a string"},
		{"int for IP", withBase(`advertise_address = 10`), "advertise_address", 4, "expected a string, got an integer"},
		{"int flag value", withBase(`[kubelet.extra_flags]`, `v = 2`), "kubelet.extra_flags.v", 5, "expected a string, got an integer"},
		{"inline table", withBase(`apiserver = { port = "6443" }`), "apiserver.port", 4, "expected an integer, got a string"},
		{"bad duration", withBase(`[pki]`, `ca_validity = "10y"`), "pki.ca_validity", 5, `"10y" is not a duration; write it like "8760h"`},

		// Identity.
		{"cluster_name missing", doc(base[1:]...), "cluster_name", 0, `required, e.g. cluster_name = "shop-prod"`},
		{"cluster_name not a label", doc(`cluster_name = "Shop_Prod"`, base[1], base[2]), "cluster_name", 1, "not a DNS label"},
		{"role missing", doc(base[0], base[2]), "role", 0, `required: role = "control-plane" or role = "worker"`},
		{"bad role", doc(base[0], `role = "master"`, base[2]), "role", 2, `use "control-plane" or "worker"`},
		{"bad node_name", withBase(`node_name = "Node_1"`), "node_name", 4, "a node name must be a DNS subdomain"},
		{"version without v", withBase(`kubernetes_version = "1.37.2"`), "kubernetes_version", 4, `write it with a leading v: "v1.37.2"`},
		{"even expect", withBase(`expect = 4`), "expect", 4, "4 is even: etcd needs a majority"},
		{"zero expect", withBase(`expect = 0`), "expect", 4, "0 is too small"},
		{"dead member timeout too short", withBase("[etcd]\nreplace_dead_after = \"10s\""), "etcd.replace_dead_after", 5,
			"10s is too short: a member rebooting would count as dead; use at least 30s"},

		// Secret.
		{"secret too short", doc(base[0], base[1], `cluster_secret = "hunter2"`), "cluster_secret", 3,
			"is 7 characters long; it must be at least 32; generate one with: openssl rand -base64 32"},
		{"both secret forms", withBase(`cluster_secret_file = "/etc/ecom-agent/cluster-secret"`), "cluster_secret_file", 4,
			"set only one of cluster_secret and cluster_secret_file"},
		{"no secret", doc(base[:2]...), "cluster_secret", 0, "required: set cluster_secret_file"},
		{"relative secret file", doc(base[0], base[1], `cluster_secret_file = "cluster-secret"`), "cluster_secret_file", 3,
			"must be an absolute path"},

		// Network.
		{"not a CIDR", withBase(`[network]`, `service_cidr = "10.96.0.0/33"`), "network.service_cidr", 5, "is not a CIDR prefix"},
		{"host bits set", withBase(`[network]`, `pod_cidr = "10.244.1.0/16"`), "network.pod_cidr", 5, `did you mean "10.244.0.0/16"?`},
		{"overlapping CIDRs", withBase(`[network]`, `pod_cidr = "10.96.0.0/16"`), "network.pod_cidr", 5, "overlaps network.service_cidr 10.96.0.0/12"},
		{"mixed families", withBase(`[network]`, `pod_cidr = "fd00:244::/56"`), "network.pod_cidr", 5, "use ranges of one family"},
		{"service CIDR too small", withBase(`[network]`, `service_cidr = "10.96.0.0/29"`), "network.service_cidr", 5, "too small"},
		{"pod CIDR too small", withBase(`[network]`, `pod_cidr = "10.244.0.0/25"`), "network.pod_cidr", 5, "smaller than the /24"},
		{"bad cluster domain", withBase(`[network]`, `cluster_domain = "cluster..local"`), "network.cluster_domain", 5, "is not a DNS name"},
		{"unknown pod network backend", withBase(`[network]`, `backend = "flannel"`), "network.backend", 5, `"flannel" is not a backend: use "host-gw"`},
		{"advertise not an IP", withBase(`advertise_address = "10.0.0.300"`), "advertise_address", 4, `"10.0.0.300" is not an IP address`},
		{"advertise unspecified", withBase(`advertise_address = "0.0.0.0"`), "advertise_address", 4, "unspecified"},
		{"advertise multicast", withBase(`advertise_address = "224.0.0.1"`), "advertise_address", 4, "multicast"},
		{"advertise in pod CIDR", withBase(`advertise_address = "10.244.0.5"`), "advertise_address", 4, "inside network.pod_cidr"},
		{"advertise other family", withBase(`advertise_address = "2001:db8::5"`), "advertise_address", 4, "is IPv6 but network.service_cidr"},
		{"bad SAN", withBase(`[apiserver]`, `extra_sans = ["*.example.com", "k8s_api"]`), "apiserver.extra_sans", 5, `"k8s_api" is neither an IP address nor a DNS name`},
		{"flag with equals", withBase(`[scheduler.extra_flags]`, `"v=2" = ""`), `scheduler.extra_flags."v=2"`, 5, `write the flag's value on the right: v = "2"`},
		{"IPv6 join without brackets", withBase(`[gossip]`, `join = ["fd00::1:7946"]`), "gossip.join", 5, "without brackets"},
		{"join port", withBase(`[gossip]`, `join = ["10.0.0.12:0"]`), "gossip.join", 5, `has port "0"`},
		{"join brackets on IPv4", withBase(`[gossip]`, `join = ["[10.0.0.12]:7946"]`), "gossip.join", 5, "brackets are for IPv6"},

		// Ports.
		{"port out of range", withBase(`[etcd]`, `peer_port = 70000`), "etcd.peer_port", 5, "70000 is not a port; use 1-65535"},
		{"port clash", withBase(`[gossip]`, `port = 2379`), "gossip.port", 5, "2379 is also etcd.client_port"},
		{"kubelet port", withBase(`[apiserver]`, `port = 10250`), "apiserver.port", 5, "the kubelet's port"},

		// PKI and paths.
		{"key algorithm", withBase(`[pki]`, `key_algorithm = "ed25519"`), "pki.key_algorithm", 5, `use "ecdsa-p256", "rsa-2048" or "rsa-3072"`},
		{"renew after expiry", withBase(`[pki]`, `renew_before = "9000h"`), "pki.renew_before", 5, "must be shorter than pki.cert_validity (8760h)"},
		{"cert outlives CA", withBase(`[pki]`, `cert_validity = "90000h"`), "pki.cert_validity", 5, "longer than pki.ca_validity (87600h)"},
		{"negative validity", withBase(`[pki]`, `ca_validity = "-1h"`), "pki.ca_validity", 5, "not a positive duration"},
		{"relative binary", withBase(`[binaries]`, `kubelet = "kubelet"`), "binaries.kubelet", 5, `must be an absolute path, e.g. "/usr/bin/kubelet"`},
		{"relative storage dir", withBase(`[addons]`, `storage_dir = "storage"`), "addons.storage_dir", 5, `must be a clean absolute directory other than /`},
		{"root as storage dir", withBase(`[addons]`, `storage_dir = "/"`), "addons.storage_dir", 5, `must be a clean absolute directory other than /`},
		{"unclean storage dir", withBase(`[addons]`, `storage_dir = "/var/lib/../etc"`), "addons.storage_dir", 5, `e.g. "/var/lib/ecom-agent-volumes"`},
		{"registry with a scheme", withBase(`[seed]`, `image_registry = "https://registry.example.com"`), "seed.image_registry", 5, `is not a registry name`},
		{"registry with a trailing slash", withBase(`[seed]`, `image_registry = "registry.example.com/"`), "seed.image_registry", 5, `without a scheme or a trailing slash`},
		{"runtime endpoint", withBase(`[kubelet]`, `container_runtime_endpoint = "/run/containerd/containerd.sock"`),
			"kubelet.container_runtime_endpoint", 5, "not a unix socket URL"},

		// Extra flags.
		{"owned flag", withBase(`[apiserver.extra_flags]`, `etcd-servers = "https://10.0.0.9:2379"`),
			"apiserver.extra_flags.etcd-servers", 5, "the agent sets --etcd-servers itself; remove it"},
		{"owned kubelet flag", withBase(`[kubelet]`, `extra_flags = { node-ip = "10.0.0.12" }`),
			"kubelet.extra_flags.node-ip", 5, "the agent sets --node-ip itself"},
		{"labels as a kubelet flag", withBase(`[kubelet.extra_flags]`, `node-labels = "tier=web"`),
			"kubelet.extra_flags.node-labels", 5, "the agent sets --node-labels itself from node.labels; set that instead"},

		// The control-plane endpoint.
		{"endpoint with a scheme", withBase(`control_plane_endpoint = "https://k8s.example.com:6443/"`), "control_plane_endpoint", 4,
			`write it without https://, as host[:port]: "k8s.example.com:6443"`},
		{"endpoint with a bad port", withBase(`control_plane_endpoint = "k8s.example.com:0"`), "control_plane_endpoint", 4, `has port "0"; use 1-65535`},
		{"loopback endpoint", withBase(`control_plane_endpoint = "127.0.0.1"`), "control_plane_endpoint", 4, "has an address that"},

		// The control plane's VIP.
		{"IPv6 VIP", withBase(`[control_plane_vip]`, `address = "fd00::100"`), "control_plane_vip.address", 5, "the agents announce the address by ARP, which is IPv4 only"},
		{"loopback VIP", withBase(`[control_plane_vip]`, `address = "127.0.0.9"`), "control_plane_vip.address", 5, "is a loopback address"},
		{"VIP is the node's address", withBase(`advertise_address = "10.0.0.11"`, `[control_plane_vip]`, `address = "10.0.0.11"`), "control_plane_vip.address", 6, "is this node's advertise_address"},
		{"VIP is a peer's address", withBase(`[gossip]`, `join = ["10.0.0.12", "10.0.0.13:7946"]`, `[control_plane_vip]`, `address = "10.0.0.13"`), "control_plane_vip.address", 7, "is in gossip.join"},
		{"VIP in the services' range", withBase(`[control_plane_vip]`, `address = "10.96.0.100"`), "control_plane_vip.address", 5, "is inside network.service_cidr 10.96.0.0/12"},
		{"VIP interface with a slash", withBase(`[control_plane_vip]`, `address = "10.0.0.100"`, `interface = "eth0/1"`), "control_plane_vip.interface", 6, "is not an interface name"},
		{"VIP interface without an address", withBase(`[control_plane_vip]`, `interface = "eth0"`), "control_plane_vip.interface", 5, "set the address too"},

		// Node labels and taints.
		{"bad label key", withBase(`[node.labels]`, `"tier/web/x" = "a"`), `node.labels."tier/web/x"`, 5, "is not a label key"},
		{"bad label value", withBase(`[node.labels]`, `tier = "a b"`), "node.labels.tier", 5, `"a b" is not a label value`},
		{"role label", withBase(`[node.labels]`, `"node-role.kubernetes.io/worker" = ""`), `node.labels."node-role.kubernetes.io/worker"`, 5,
			"node-role labels are not the kubelet's to set"},
		{"restricted label", withBase(`[node.labels]`, `"kubernetes.io/tier" = "web"`), `node.labels."kubernetes.io/tier"`, 5,
			`a kubelet may not set labels in kubernetes.io except`},
		{"the kubelet's own label", withBase(`[node.labels]`, `"kubernetes.io/os" = "windows"`), `node.labels."kubernetes.io/os"`, 5,
			"the kubelet sets kubernetes.io/os itself"},
		{"taint without effect", withBase(`[node]`, `taints = ["dedicated=db"]`), "node.taints", 5, `entry 1: "dedicated=db" has no effect`},
		{"taint with a bad effect", withBase(`[node]`, `taints = ["a:NoSchedule", "dedicated=db:Never"]`), "node.taints", 5,
			`entry 2: "dedicated=db:Never": the effect "Never" is not NoSchedule, PreferNoSchedule or NoExecute`},
		{"taint with a bad key", withBase(`[node]`, `taints = ["-x:NoSchedule"]`), "node.taints", 5, `the key "-x" is invalid`},
		{"the control-plane taint", withBase(`[node]`, `taints = ["node-role.kubernetes.io/control-plane:NoSchedule"]`), "node.taints", 5,
			"the control-plane taint is node.control_plane_taint's"},
		{"a taint twice", withBase(`[node]`, `taints = ["a=1:NoSchedule", "a=2:NoSchedule"]`), "node.taints", 5, "entry 2: a with effect NoSchedule is already listed"},
		{"bad control-plane taint", withBase(`[node]`, `control_plane_taint = "always"`), "node.control_plane_taint", 5,
			`"always" is not one of "PreferNoSchedule", "NoSchedule" or "none"`},
		{"flag with dashes", withBase(`[scheduler.extra_flags]`, `--v = "2"`), "scheduler.extra_flags.--v", 5, "without dashes"},
		{"snapshots too often", withBase(`[etcd.snapshots]`, `interval = "1m"`), "etcd.snapshots.interval", 5, `use at least "5m"`},
		{"no snapshot kept", withBase(`[etcd.snapshots]`, `retention = 0`), "etcd.snapshots.retention", 5, "keep at least 1"},
		{"relative snapshot dir", withBase(`[etcd.snapshots]`, `dir = "snaps"`), "etcd.snapshots.dir", 5, "must be an absolute path"},
		{"owned flag with dashes", withBase(`[etcd.extra_flags]`, `"--data-dir" = "/x"`), "etcd.extra_flags.--data-dir", 5, "the agent sets --data-dir itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.line = line(tc.file, tc.line)
			_, err := Parse([]byte(tc.file), "config.toml", oneHost())
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.file)
			}
			found := false
			for _, p := range problems(t, err) {
				if p.Key == tc.key && p.Line == tc.line && strings.Contains(p.Msg, tc.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("want a problem with key %q at line %d containing %q; got:\n%v", tc.key, tc.line, tc.msg, err)
			}
			where := "config.toml"
			if tc.line > 0 {
				where += fmt.Sprintf(":%d", tc.line)
			}
			if want := fmt.Sprintf("%s: key %q: ", where, tc.key); !strings.Contains(err.Error(), want) {
				t.Errorf("error text lacks %q:\n%v", want, err)
			}
		})
	}
}

// TestValidInput checks values the validation must accept.
func TestValidInput(t *testing.T) {
	for _, tc := range []struct{ name, extra string }{
		{"single-node lab", "expect = 1"},
		{"IPv6 cluster", "advertise_address = \"2001:db8::5\"\n[network]\nservice_cidr = \"fd00:96::/108\"\npod_cidr = \"fd00:244::/56\""},
		{"joins", `gossip.join = ["10.0.0.12", "10.0.0.13:7946", "[fd00::1]", "[fd00::1]:7946", "cp.example.com", "CP-2.Example.com:8000"]`},
		{"SANs", `apiserver.extra_sans = ["*.example.com", "k8s.example.com", "203.0.113.10", "2001:db8::10"]`},
		{"extra flags", "[apiserver.extra_flags]\naudit-log-maxage = \"30\"\n\"feature-gates\" = \"A=true,B=false\""},
		{"small pod CIDR with node mask", "[network]\npod_cidr = \"10.244.0.0/25\"\n[controller_manager.extra_flags]\nnode-cidr-mask-size = \"26\""},
		{"private secret file permissions allowed by name", `kubernetes_version = "v1.38.0"`},
		{"pprof on loopback", "[metrics]\naddress = \"127.0.0.1:7948\"\npprof = true"},
		{"metrics on every address without pprof", "[metrics]\naddress = \":7948\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(doc(append(base[:len(base):len(base)], tc.extra)...)), "config.toml", oneHost()); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSyntaxError(t *testing.T) {
	_, err := Parse([]byte(doc(append(base[:len(base):len(base)], "\texpect = = 3")...)), "config.toml", oneHost())
	ps := problems(t, err)
	if len(ps) != 1 || ps[0].Line != 5 {
		t.Fatalf("problems = %+v, want one syntax error at line 4", ps)
	}
	want := "config.toml:5: syntax error at column 11: expected value but found '=' instead\n\t\texpect = = 3\n\t\t         ^"
	if err.Error() != want {
		t.Errorf("error =\n%s\nwant\n%s", err, want)
	}
}

// TestSyntaxErrorLines checks that a syntax error names the line to fix:
// the parser's own line is one too far when it had read the newline it
// complains about, and a bracket left open shows up lines below, where
// the parser gives up.
func TestSyntaxErrorLines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		line  int
		msg   string
		src   string // the source line shown
	}{
		{"unclosed table header", []string{"[apiserver", "port = 6443"}, 4, "column 11: expected '.' or ']' to end table name", "[apiserver"},
		{"unclosed header before a blank line", []string{"[gossip", "", "port = 7946"}, 4, "column 8: expected '.' or ']'", "[gossip"},
		{"unterminated string", []string{`kubernetes_version = "v1.37.2`, "expect = 3"}, 4, "column 30: strings cannot contain newlines", "kubernetes_version"},
		{"missing value", []string{"expect =", "[gossip]"}, 4, "column 9: expected value", "expect ="},
		{"key without a value", []string{"expect", "[gossip]"}, 4, "column 7: expected '.' or '='", "expect"},
		{"unquoted duration", []string{"[pki]", "ca_validity = 87600h"}, 5, "column 20: expected a top-level item to end", "ca_validity"},
		{"array not closed before a table", []string{"[gossip]", `join = ["10.0.0.11", "10.0.0.12"`, "", "[network]", `service_cidr = "10.96.0.0/12"`}, 5,
			`column 8: this array is never closed (a missing "]"?); the parser was still inside it at line 8, column 1`, "join = ["},
		{"array not closed before a key", []string{"[gossip]", `join = ["10.0.0.11",`, "port = 7946"}, 5, "this array is never closed", "join = ["},
		{"missing comma in a closed array", []string{"[gossip]", "join = [", `  "10.0.0.11"`, `  "10.0.0.12",`, "]"}, 7, "column 3: expected a comma", `"10.0.0.12"`},
		{"duplicate key", []string{"expect = 3", "expect = 5"}, 5, "has already been defined", "expect = 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := doc(append(base[:len(base):len(base)], tc.lines...)...)
			_, err := Parse([]byte(file), "config.toml", oneHost())
			ps := problems(t, err)
			if len(ps) != 1 || ps[0].Line != line(file, tc.line) || !strings.Contains(ps[0].Msg, tc.msg) {
				t.Fatalf("problems = %+v\nwant one at line %d with %q", ps, tc.line, tc.msg)
			}
			if shown := strings.Split(ps[0].Msg, "\n"); len(shown) < 2 || !strings.Contains(shown[1], tc.src) {
				t.Errorf("the line shown is not line %d:\n%s", tc.line, ps[0].Msg)
			}
		})
	}
	// A byte-order mark does not shift the column.
	_, err := Parse([]byte("\xef\xbb\xbf"+doc(append(base[:len(base):len(base)], "expect = = 3")...)), "config.toml", oneHost())
	if ps := problems(t, err); len(ps) != 1 || ps[0].Line != 5 || !strings.Contains(ps[0].Msg, "column 10:") {
		t.Errorf("with a BOM: %+v", ps)
	}
}

// TestAllProblems checks that one Parse reports every problem, in line
// order, without follow-on noise for keys that failed to decode.
func TestAllProblems(t *testing.T) {
	file := doc(
		`cluster_name = "shop"`,
		`role = "control-plane"`,
		`expect = "three"`,
		`cluster_secret = "short"`,
		`[apiserver]`,
		`prot = 6443`,
		`[network]`,
		`pod_cidr = "10.96.0.0/16"`,
	)
	_, err := Parse([]byte(file), "config.toml", oneHost())
	want := `config.toml:3: key "expect": expected an integer, got a string
config.toml:4: key "cluster_secret": is 5 characters long; it must be at least 32; ` + generateHint + `
config.toml:7: key "apiserver.prot": unknown key; did you mean "apiserver.port"?
config.toml:9: key "network.pod_cidr": 10.96.0.0/16 overlaps network.service_cidr 10.96.0.0/12; use ranges that do not overlap, e.g. the defaults 10.244.0.0/16 and 10.96.0.0/12`
	if err == nil || err.Error() != want {
		t.Errorf("error =\n%v\nwant\n%s", err, want)
	}
}
