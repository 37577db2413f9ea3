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

// generateHint tells the operator how to make a good secret.
const generateHint = "generate one with: openssl rand -base64 32  (or: head -c 32 /dev/urandom | base64)"

// resolveSecret checks that exactly one of cluster_secret and
// cluster_secret_file is set, reads the file if that is the one, and leaves
// the secret in c.ClusterSecret.
func (l *loader) resolveSecret(c *Config) {
	inline, file := l.defined["cluster_secret"], l.defined["cluster_secret_file"]
	switch {
	case inline && file:
		l.add("cluster_secret_file", "set only one of cluster_secret and cluster_secret_file; remove the other")
	case !inline && !file:
		l.add("cluster_secret", `required: set cluster_secret_file = "/etc/ecom-agent/cluster-secret" `+
			`(a file with mode 0600 holding at least 32 characters) or cluster_secret = "<at least 32 characters>"; `+generateHint)
	case inline:
		if n := len(c.ClusterSecret); n < minSecretLen {
			l.add("cluster_secret", "is %d characters long; it must be at least %d; %s", n, minSecretLen, generateHint)
		} else if isPlaceholder(string(c.ClusterSecret)) {
			l.add("cluster_secret", "is the example's placeholder, which anyone can read; %s", generateHint)
		} else if d := distinct(string(c.ClusterSecret)); d < minSecretDistinct {
			l.add("cluster_secret", "has only %d different characters: it is guessable; %s", d, generateHint)
		}
	case file:
		if s, ok := l.readSecretFile(c.ClusterSecretFile); ok {
			c.ClusterSecret = s
		}
	}
}

// readSecretFile reads the secret from the logical path p under the root,
// refusing files that are not private to their owner.
func (l *loader) readSecretFile(p string) (Secret, bool) {
	const key = "cluster_secret_file"
	if !filepath.IsAbs(p) {
		l.add(key, "%q must be an absolute path, e.g. \"/etc/ecom-agent/cluster-secret\"", p)
		return "", false
	}
	real := filepath.Join(l.opts.root(), filepath.Clean(p))
	fi, err := os.Stat(real)
	switch {
	case err != nil && os.IsNotExist(err):
		l.add(key, "%s does not exist; create it with: head -c 32 /dev/urandom | base64 > %s && chmod 600 %s", p, p, p)
		return "", false
	case err != nil:
		l.add(key, "cannot read %s: %v", p, unwrapPath(err))
		return "", false
	case !fi.Mode().IsRegular():
		l.add(key, "%s is not a regular file; point cluster_secret_file at a file holding the secret", p)
		return "", false
	case fi.Mode().Perm()&0o077 != 0:
		l.add(key, "%s is accessible by group or others (mode %04o); run: chmod 600 %s", p, fi.Mode().Perm(), p)
		return "", false
	}
	if uid, ok := fileOwner(fi); ok && uid != 0 && uid != os.Geteuid() {
		l.add(key, "%s belongs to user %d, who could change the cluster's secret; run: chown root: %s", p, uid, p)
		return "", false
	}
	data, err := os.ReadFile(real)
	if err != nil {
		l.add(key, "cannot read %s: %v", p, unwrapPath(err))
		return "", false
	}
	s := strings.TrimSpace(string(data))
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
