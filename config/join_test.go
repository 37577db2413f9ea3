package config

import (
	"slices"
	"strings"
	"testing"
)

// A worker joins with a token and servers, holds no cluster secret, and
// gossips with its servers unless told otherwise; a control-plane node
// holds no token.
func TestJoin(t *testing.T) {
	worker := func(lines ...string) string {
		return doc(append([]string{base[0], `role = "worker"`}, lines...)...)
	}
	c, err := Parse([]byte(worker(workerJoin...)), "config.toml", oneHost())
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Join.Token) != testJoinToken || len(c.Secret()) != 0 || c.ControlPlaneSecret() != nil {
		t.Errorf("a worker's secrets: token %q, secret %q", c.Join.Token, c.Secret())
	}
	if want := []string{"10.0.0.12", "10.0.0.13"}; !slices.Equal(c.Gossip.Join, want) {
		t.Errorf("gossip.join %q, want %q", c.Gossip.Join, want)
	}
	if want := []string{"10.0.0.12:7949", "10.0.0.13:7950"}; !slices.Equal(c.JoinServerAddrs(), want) {
		t.Errorf("join servers %q, want %q", c.JoinServerAddrs(), want)
	}
	v6, err := Parse([]byte(worker(`[join]`, `token = "`+testJoinToken+`"`, `servers = ["[fd00::1]", "[fd00::2]:7000"]`, `port = 7001`)), "config.toml", oneHost())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"[fd00::1]:7001", "[fd00::2]:7000"}; !slices.Equal(v6.JoinServerAddrs(), want) || !slices.Equal(v6.Gossip.Join, []string{"[fd00::1]", "[fd00::2]"}) {
		t.Errorf("IPv6 servers %q, gossip %q", v6.JoinServerAddrs(), v6.Gossip.Join)
	}
	for _, tc := range []struct {
		name, file, key, msg string
	}{
		{"worker with the cluster secret", worker(append([]string{base[2]}, workerJoin...)...), "cluster_secret",
			"a worker holds no cluster secret: it joins with join.token"},
		{"worker with the secret file", worker(append([]string{`cluster_secret_file = "/etc/ecom-agent/cluster-secret"`}, workerJoin...)...),
			"cluster_secret_file", "remove cluster_secret_file"},
		{"worker without a token", worker(`[join]`, `servers = ["10.0.0.12"]`), "join.token", "ecom-agent token create"},
		{"worker without servers", worker(`[join]`, `token = "`+testJoinToken+`"`), "join.servers", "required on a worker"},
		{"worker with a bad server", worker(`[join]`, `token = "`+testJoinToken+`"`, `servers = ["fd00::1"]`), "join.servers", "without brackets"},
		{"worker with a short token", worker(`[join]`, `token = "EA1::x"`, `servers = ["10.0.0.12"]`), "join.token", "is not an ecom-agent join token"},
		{"control plane with a token", doc(append(slices.Clone(base), workerJoin...)...), "join.token", "only a worker joins with a token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file), "config.toml", oneHost())
			if err == nil {
				t.Fatalf("loaded:\n%s", tc.file)
			}
			found := false
			for _, p := range problems(t, err) {
				found = found || (p.Key == tc.key && strings.Contains(p.Msg, tc.msg))
			}
			if !found {
				t.Errorf("want a problem for %s containing %q, got:\n%v", tc.key, tc.msg, err)
			}
			if strings.Contains(err.Error(), "0123456789abcdef0123456789abcdef\"") {
				t.Error("the error shows the token")
			}
		})
	}
}
