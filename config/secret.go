package config

import (
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// minSecretLen is the shortest cluster secret accepted, in characters.
const minSecretLen = 32

// redacted is what a Secret shows instead of itself.
const redacted = "[redacted]"

// Secret is a string that never shows itself: fmt (every verb, including
// %#v), slog and text or JSON encoding all print "[redacted]". An empty
// Secret prints as empty, so "unset" stays visible. Convert it with string()
// or []byte() where the value is really needed.
type Secret string

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString is like String, for %#v.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.String()) }

// Format writes String for every verb, so no verb can print the secret.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' || (verb == 'v' && f.Flag('#')) {
		io.WriteString(f, s.GoString())
		return
	}
	io.WriteString(f, s.String())
}

// LogValue keeps the secret out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps the secret out of JSON, TOML and other text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText sets the secret from text.
func (s *Secret) UnmarshalText(text []byte) error {
	*s = Secret(text)
	return nil
}

// Secret returns the cluster secret, read from cluster_secret_file when
// that was how it was given.
func (c *Config) Secret() []byte { return []byte(c.ClusterSecret) }

// ControlPlaneSecret returns the control-plane key (control_plane_key or
// the content of control_plane_key_file); nil on a worker, which never
// holds it.
func (c *Config) ControlPlaneSecret() []byte {
	if c.ControlPlaneKey == "" {
		return nil
	}
	return []byte(c.ControlPlaneKey)
}

// generateHint tells the operator how to make a good secret.
const generateHint = "generate one with: openssl rand -base64 32  (or: head -c 32 /dev/urandom | base64)"

// secretKeys names the two ways of giving one secret, and what it is for
// in messages.
type secretKeys struct {
	inline, file, what, example string
	// required is the message when neither key is set, check the
	// problem with a value ("" if none); both default to a secret's.
	required string
	check    func(string) string
}

// problem says what is wrong with the value v, or "".
func (k secretKeys) problem(v string) string {
	if k.check != nil {
		return k.check(v)
	}
	switch {
	case len(v) < minSecretLen:
		return fmt.Sprintf("is %d characters long; it must be at least %d; %s", len(v), minSecretLen, generateHint)
	case isPlaceholder(v):
		return "is the example's placeholder, which anyone can read; " + generateHint
	case distinct(v) < minSecretDistinct:
		return fmt.Sprintf("has only %d different characters: it is guessable; %s", distinct(v), generateHint)
	}
	return ""
}

var (
	clusterSecretKeys = secretKeys{inline: "cluster_secret", file: "cluster_secret_file", what: "the cluster's secret", example: "/etc/ecom-agent/cluster-secret"}
	controlPlaneKeys  = secretKeys{inline: "control_plane_key", file: "control_plane_key_file", what: "the control-plane key", example: "/etc/ecom-agent/control-plane-key"}
)

// resolveSecret checks that exactly one of cluster_secret and
// cluster_secret_file is set, reads the file if that is the one, and leaves
// the secret in c.ClusterSecret; then the same for the control-plane key,
// which control-plane nodes must hold and workers must not.
func (l *loader) resolveSecret(c *Config) {
	if c.Role == RoleWorker {
		for _, k := range []string{clusterSecretKeys.inline, clusterSecretKeys.file} {
			if l.defined[k] {
				l.add(k, "a worker holds no cluster secret: it joins with join.token (ecom-agent token create on a control-plane node prints one); "+
					"remove %s from this worker's config", k)
			}
		}
	} else {
		l.resolveOne(clusterSecretKeys, &c.ClusterSecret, c.ClusterSecretFile, true)
	}
	switch {
	case c.Role == RoleWorker && l.defined["control_plane_key"]:
		l.add("control_plane_key", "a worker must not hold the control-plane key: it opens the cluster's CA keys; "+
			"remove control_plane_key from this worker's config")
		c.ControlPlaneKey = ""
	case c.Role == RoleWorker && l.defined["control_plane_key_file"]:
		// The same config may go on every node; the key file goes on
		// control-plane hosts only.
		c.ControlPlaneKey = ""
		if p := c.ControlPlaneKeyFile; filepath.IsAbs(p) {
			if _, err := os.Lstat(filepath.Join(l.opts.root(), filepath.Clean(p))); err == nil {
				l.add("control_plane_key_file", "this worker holds the control-plane key (%s), which opens the cluster's CA keys; "+
					"delete it from this host: workers must not have it", p)
			}
		}
	case c.Role == RoleControlPlane:
		l.resolveOne(controlPlaneKeys, &c.ControlPlaneKey, c.ControlPlaneKeyFile, true)
		if c.ControlPlaneKey != "" && c.ControlPlaneKey == c.ClusterSecret {
			l.add(controlPlaneKeys.inline, "is the same as the cluster secret, which workers hold too; "+
				"the control-plane key must be another secret; %s", generateHint)
		}
	}
}

// resolveOne checks one secret given inline or in a file.
func (l *loader) resolveOne(k secretKeys, s *Secret, file string, required bool) {
	inline, inFile := l.defined[k.inline], l.defined[k.file]
	switch {
	case inline && inFile:
		l.add(k.file, "set only one of %s and %s; remove the other", k.inline, k.file)
	case !inline && !inFile:
		if required && k.required != "" {
			l.add(k.inline, "%s", k.required)
		} else if required {
			l.add(k.inline, `required: set %s = "%s" (a file with mode 0600 holding at least %d characters) or %s = "<at least %d characters>"; %s`,
				k.file, k.example, minSecretLen, k.inline, minSecretLen, generateHint)
		}
	case inline:
		if fi := l.fileInfo; fi != nil {
			if fi.Mode().Perm()&0o077 != 0 {
				l.add(k.inline, "is written in %s, which group or others can read (mode %04o); run: chmod 600 %s, or move the secret to %s",
					l.file, fi.Mode().Perm(), l.file, k.file)
				return
			}
			if uid, ok := fileOwner(fi); ok && uid != 0 && uid != os.Geteuid() {
				l.add(k.inline, "is written in %s, which belongs to user %d, who could read or change it; run: chown root: %s", l.file, uid, l.file)
				return
			}
		}
		if p := k.problem(string(*s)); p != "" {
			l.add(k.inline, "%s", p)
		}
	case inFile:
		if v, ok := l.readSecretFile(k, file); ok {
			*s = v
		}
	}
}

// readSecretFile reads a secret from the logical path p under the root,
// refusing files that are not private to their owner.
func (l *loader) readSecretFile(k secretKeys, p string) (Secret, bool) {
	key := k.file
	if !filepath.IsAbs(p) {
		l.add(key, "%q must be an absolute path, e.g. %q", p, k.example)
		return "", false
	}
	real := filepath.Join(l.opts.root(), filepath.Clean(p))
	fi, err := os.Stat(real)
	switch {
	case err != nil && os.IsNotExist(err) && k.check != nil:
		l.add(key, "%s does not exist; %s", p, k.required)
		return "", false
	case err != nil && os.IsNotExist(err):
		l.add(key, "%s does not exist; create it with: head -c 32 /dev/urandom | base64 > %s && chmod 600 %s", p, p, p)
		return "", false
	case err != nil:
		l.add(key, "cannot read %s: %v", p, unwrapPath(err))
		return "", false
	case !fi.Mode().IsRegular():
		l.add(key, "%s is not a regular file; point %s at a file holding %s", p, key, k.what)
		return "", false
	case fi.Mode().Perm()&0o077 != 0:
		l.add(key, "%s is accessible by group or others (mode %04o); run: chmod 600 %s", p, fi.Mode().Perm(), p)
		return "", false
	}
	if uid, ok := fileOwner(fi); ok && uid != 0 && uid != os.Geteuid() {
		l.add(key, "%s belongs to user %d, who could change %s; run: chown root: %s", p, uid, k.what, p)
		return "", false
	}
	data, err := os.ReadFile(real)
	if err != nil {
		l.add(key, "cannot read %s: %v", p, unwrapPath(err))
		return "", false
	}
	s := strings.TrimSpace(string(data))
	if k.check != nil {
		if prob := k.check(s); prob != "" {
			l.add(key, "%s in %s %s", k.what, p, prob)
			return "", false
		}
		return Secret(s), true
	}
	if len(s) < minSecretLen {
		l.add(key, "the secret in %s is %d characters long; it must be at least %d; generate one with: "+
			"head -c 32 /dev/urandom | base64 > %s", p, len(s), minSecretLen, p)
		return "", false
	}
	if isPlaceholder(s) {
		l.add(key, "%s holds the example's placeholder, which anyone can read; replace it: head -c 32 /dev/urandom | base64 > %s", p, p)
		return "", false
	}
	if n := distinct(s); n < minSecretDistinct {
		l.add(key, "the secret in %s has only %d different characters: it is guessable; replace it: head -c 32 /dev/urandom | base64 > %s", p, n, p)
		return "", false
	}
	return Secret(s), true
}

// minSecretDistinct is the fewest different characters a secret may
// have: random base64 or hex has far more; "aaaa..." or a repeated word
// has fewer.
const minSecretDistinct = 10

// distinct counts the different characters of s.
func distinct(s string) int {
	seen := map[rune]bool{}
	for _, r := range s {
		seen[r] = true
	}
	return len(seen)
}

// fileOwner is the user ID that owns the file, where the system says.
func fileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// isPlaceholder reports the examples' placeholder secrets ("CHANGE-ME...",
// packaging/cloud-init), so a copied example never runs a cluster on a
// published secret.
func isPlaceholder(s string) bool { return strings.HasPrefix(strings.ToUpper(s), "CHANGE-ME") }

// unwrapPath drops the *fs.PathError wrapper, whose path is the resolved
// one under the root rather than the path the operator wrote.
func unwrapPath(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}
