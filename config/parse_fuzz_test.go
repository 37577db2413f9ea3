package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: any file either loads or fails with a *config.Error whose
// every problem says something, never panics, and never echoes a secret
// it was given.
func FuzzParse(f *testing.F) {
	f.Add(doc(base...))
	f.Add(doc(base[0], `role = "control-plane"`, base[2], `control_plane_key = "`+testControlPlaneKey+`"`))
	f.Add(doc(base[0], `role = "worker"`, `cluster_secret = "short"`, `[gossip]`, `join = ["[fe80::1%eth0]:7946"]`))
	f.Add("cluster_name = 1\n[[gossip]]\n")
	f.Add(doc(base[0], base[1], `cluster_secret = "`+testSecret))
	f.Add(doc(base[0], base[1], `"cluster_secret" = `+testSecret))
	f.Add(doc(base...) + "[etcd]\nextra_flags = { \"initial-cluster\" = \"x\" }\n")
	f.Fuzz(func(t *testing.T, file string) {
		c, err := Parse([]byte(file), "config.toml", oneHost())
		if err == nil {
			if c.ClusterName == "" || (c.Role != RoleControlPlane && c.Role != RoleWorker) || len(c.ClusterSecret) < minSecretLen {
				t.Errorf("loaded an incomplete config: %+v", c)
			}
			return
		}
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("error %v (%T) is not a *config.Error", err, err)
		}
		for _, p := range ce.Problems {
			if p.Msg == "" {
				t.Errorf("a problem says nothing: %+v", p)
			}
		}
		for _, v := range secretValues(file) {
			if strings.Contains(err.Error(), v) {
				t.Errorf("the error shows the secret %q: %v", v, err)
			}
		}
	})
}

// secretValues are the values a file assigns to secret keys (at least 8
// characters, and not written anywhere else in the file).
func secretValues(file string) []string {
	lines := strings.Split(file, "\n")
	var out []string
	for i, line := range lines {
		if _, ok := secretAssignment(line); !ok {
			continue
		}
		_, v, _ := strings.Cut(line, "=")
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		if len(v) < 8 {
			continue
		}
		elsewhere := false
		for j, other := range lines {
			if j != i && strings.Contains(other, v) {
				elsewhere = true
			}
		}
		if !elsewhere {
			out = append(out, v)
		}
	}
	return out
}
