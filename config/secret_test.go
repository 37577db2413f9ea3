package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode
		dir     bool   // make the path a directory instead
		msg     string // substring of the problem, "" if it loads
	}{
		{"private", testSecret + "\n", 0o600, false, ""},
		{"read-only", "  " + testSecret + "  \n", 0o400, false, ""},
		{"world-readable", testSecret, 0o644, false, "is accessible by group or others (mode 0644); run: chmod 600 /etc/ecom-agent/cluster-secret"},
		{"group-readable", testSecret, 0o640, false, "(mode 0640); run: chmod 600"},
		{"too short", "hunter2\n", 0o600, false, "the secret in /etc/ecom-agent/cluster-secret is 7 characters long; it must be at least 32"},
		{"empty", "", 0o600, false, "is 0 characters long"},
		{"directory", "", 0o700, true, "is not a regular file"},
		{"missing", "", 0, false, "does not exist; create it with: head -c 32 /dev/urandom | base64 > /etc/ecom-agent/cluster-secret"},
		{"guessable", strings.Repeat("ab", 20), 0o600, false, "has only 2 different characters: it is guessable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			p := filepath.Join(root, "etc/ecom-agent/cluster-secret")
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.dir:
				if err := os.Mkdir(p, tc.mode); err != nil {
					t.Fatal(err)
				}
			case tc.mode != 0:
				if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, tc.mode); err != nil { // past the umask
					t.Fatal(err)
				}
			}
			opts := oneHost()
			opts.Root = root
			file := doc(base[0], base[1], `cluster_secret_file = "/etc/ecom-agent/cluster-secret"`)
			c, err := Parse([]byte(file), "config.toml", opts)
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if string(c.Secret()) != testSecret {
					t.Errorf("Secret() = %q, want the file's trimmed content", c.Secret())
				}
				return
			}
			ps := problems(t, err)
			if len(ps) != 1 || ps[0].Key != "cluster_secret_file" || ps[0].Line != 3 || !strings.Contains(ps[0].Msg, tc.msg) {
				t.Errorf("problems = %+v, want one at line 3 containing %q", ps, tc.msg)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Error("the error shows the secret")
			}
		})
	}
}

func TestSecretNeverShown(t *testing.T) {
	c, err := Parse([]byte(doc(base...)), "config.toml", oneHost())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %s %q %x %v %+v %#v",
		c, c, c, c.ClusterSecret, c.ClusterSecret, c.ClusterSecret, *c, *c, *c)
	fmt.Fprint(&out, c.ClusterSecret, c, *c)
	fmt.Fprintln(&out, c.ClusterSecret)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("config", "cfg", c, "value", *c, "secret", c.ClusterSecret)
	slog.New(slog.NewTextHandler(&out, nil)).Info("config", "cfg", c, "value", *c, "secret", c.ClusterSecret)
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(j)
	if strings.Contains(out.String(), testSecret) || strings.Contains(out.String(), fmt.Sprintf("%x", testSecret)) {
		t.Errorf("the secret shows in:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "[redacted]") {
		t.Errorf("no [redacted] in:\n%s", out.String())
	}
	if got := fmt.Sprintf("%v|%#v", Secret(""), Secret("")); got != `|""` {
		t.Errorf("an empty secret formats as %q, want it visibly empty", got)
	}
}

// A secret file another user owns could be changed by that user: it is
// refused (the test runs as root, so it can give the file away).
func TestSecretFileOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file to another user")
	}
	root := t.TempDir()
	p := filepath.Join(root, "etc/ecom-agent/cluster-secret")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(testSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	opts := oneHost()
	opts.Root = root
	_, err := Parse([]byte(doc(base[0], base[1], `cluster_secret_file = "/etc/ecom-agent/cluster-secret"`)), "config.toml", opts)
	if ps := problems(t, err); len(ps) != 1 || !strings.Contains(ps[0].Msg, "belongs to user 65534") || !strings.Contains(ps[0].Msg, "chown root:") {
		t.Errorf("problems = %+v", ps)
	}
}

// An inline secret with too few different characters is refused.
func TestInlineSecretGuessable(t *testing.T) {
	_, err := Parse([]byte(doc(base[0], base[1], `cluster_secret = "`+strings.Repeat("x", 40)+`"`)), "config.toml", oneHost())
	if ps := problems(t, err); len(ps) != 1 || ps[0].Key != "cluster_secret" || !strings.Contains(ps[0].Msg, "only 1 different characters") {
		t.Errorf("problems = %+v", ps)
	}
}

// TestControlPlaneKey: control-plane nodes must hold a control-plane key
// other than the cluster secret; a worker must not hold one, though its
// config may name the file that control-plane hosts have.
func TestControlPlaneKey(t *testing.T) {
	const keyFile = `control_plane_key_file = "/etc/ecom-agent/control-plane-key"`
	cp := func(extra ...string) string {
		return strings.Join(append([]string{base[0], `role = "control-plane"`, base[2]}, extra...), "\n") + "\n"
	}
	worker := func(extra ...string) string {
		return doc(append(append([]string{base[0], `role = "worker"`}, extra...), workerJoin...)...)
	}
	for _, tc := range []struct {
		name    string
		file    string
		onHost  bool   // the key file exists on the host
		key     string // the problem's key, "" if it loads
		msg     string
		wantKey string // the loaded key
	}{
		{"control plane, inline", cp(`control_plane_key = "` + testControlPlaneKey + `"`), false, "", "", testControlPlaneKey},
		{"control plane, file", cp(keyFile), true, "", "", testControlPlaneKey},
		{"control plane, none", cp(), false, "control_plane_key", "required: set control_plane_key_file", ""},
		{"control plane, file missing", cp(keyFile), false, "control_plane_key_file", "does not exist; create it", ""},
		{"control plane, same as the cluster secret", cp(`control_plane_key = "` + testSecret + `"`), false, "control_plane_key", "is the same as the cluster secret", ""},
		{"control plane, both", cp(keyFile, `control_plane_key = "`+testControlPlaneKey+`"`), true, "control_plane_key_file", "set only one", ""},
		{"control plane, short", cp(`control_plane_key = "short"`), false, "control_plane_key", "is 5 characters long", ""},
		{"worker, none", worker(), false, "", "", ""},
		{"worker, file named but not on the host", worker(keyFile), false, "", "", ""},
		{"worker, file on the host", worker(keyFile), true, "control_plane_key_file", "delete it from this host", ""},
		{"worker, inline", worker(`control_plane_key = "` + testControlPlaneKey + `"`), false, "control_plane_key", "a worker must not hold the control-plane key", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.onHost {
				p := filepath.Join(root, "etc/ecom-agent/control-plane-key")
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(testControlPlaneKey+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			opts := oneHost()
			opts.Root = root
			c, err := Parse([]byte(tc.file), "config.toml", opts)
			if tc.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := string(c.ControlPlaneSecret()); got != tc.wantKey {
					t.Errorf("ControlPlaneSecret() = %q, want %q", got, tc.wantKey)
				}
				return
			}
			ps := problems(t, err)
			if len(ps) != 1 || ps[0].Key != tc.key || !strings.Contains(ps[0].Msg, tc.msg) {
				t.Errorf("problems = %+v, want one for %s containing %q", ps, tc.key, tc.msg)
			}
			if strings.Contains(err.Error(), testControlPlaneKey) {
				t.Error("the error shows the key")
			}
		})
	}
}

// An inline secret is accepted only from a config file private to root
// (or the agent's user): the packaged config is 0644 and names files.
func TestInlineSecretNeedsAPrivateFile(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		msg  string
	}{
		{0o600, ""},
		{0o400, ""},
		{0o644, "which group or others can read (mode 0644); run: chmod 600"},
		{0o640, "(mode 0640)"},
	} {
		p := filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(p, []byte(doc(base[0], base[1], base[2], `control_plane_key_file = "/etc/ecom-agent/control-plane-key"`)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		opts := oneHost()
		opts.Root = exampleRoot(t)
		_, err := Load(p, opts)
		if tc.msg == "" {
			if err != nil {
				t.Errorf("mode %04o: %v", tc.mode, err)
			}
			continue
		}
		ps := problems(t, err)
		if len(ps) != 1 || ps[0].Key != "cluster_secret" || ps[0].Line != 3 || !strings.Contains(ps[0].Msg, tc.msg) {
			t.Errorf("mode %04o: problems = %+v, want one at line 3 containing %q", tc.mode, ps, tc.msg)
		}
	}
	// A file naming the secret file may be world-readable.
	root := exampleRoot(t)
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(doc(base[0], base[1], `cluster_secret_file = "/etc/ecom-agent/cluster-secret"`,
		`control_plane_key_file = "/etc/ecom-agent/control-plane-key"`)), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := oneHost()
	opts.Root = root
	if _, err := Load(p, opts); err != nil {
		t.Errorf("a 0644 file naming the secret file: %v", err)
	}
}
