// Package token is ecom-agent's join token: a short string an operator
// hands to a joining node that authenticates the joiner to the cluster and
// pins the cluster CA the joiner must see, like kubeadm's
// --discovery-token-ca-cert-hash or k3s's K10<hash>::... tokens.
//
// A token looks like
//
//	EA1::sha256:<64 hex>::<id>.<expiry>.<mac>
//
// where
//
//   - EA1 is the format and its version.
//   - sha256:<64 hex> is the SHA-256 of the cluster CA certificate's
//     SubjectPublicKeyInfo (pki.CAHash), the same value kubeadm pins and
//     `openssl x509 -in ca.crt -pubkey -noout | openssl pkey -pubin -outform der | sha256sum`
//     prints.
//   - id is 12 random hex digits naming the token in logs; the rest of the
//     token never appears in logs.
//   - expiry is the Unix time the token stops being accepted, 0 for never.
//   - mac is 32 hex digits: HMAC-SHA256, truncated to 128 bits, over the
//     version, id, expiry and CA hash, keyed with peer.DeriveKey(secret,
//     Purpose, clusterName).
//
// Because the MAC key comes from the cluster secret, every node holding the
// secret verifies any token without shared storage, a token expires by
// itself, and a token made for one cluster is refused by another even if
// they share a secret. The flip side: tokens cannot be revoked one by one;
// a token without expiry stays valid until the cluster secret changes.
//
// A token does not replace the cluster secret. Gossip encryption
// (memberlist's keyring), the agents' request channel and the sealing of
// the CA key bundle all use keys derived from the secret, so a node with
// only a token cannot take part in them and never receives CA keys. A
// token authenticates a joiner (a worker asking for its kubelet
// certificates) and tells it which CA to trust.
//
// The token is a bearer credential: a joiner must send it only over a
// connection whose server certificate chains to the CA the token pins
// (CheckCA), never before that check, or whoever answers first learns it.
//
// In the symmetric cloud-init case every node has the cluster secret and no
// token; it then trusts the CA it sees on first contact and remembers its
// hash with a Pin, refusing a different CA later.
package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ecom-platform/ecom-agent/peer"
)

// Purpose is the peer.DeriveKey purpose of the key that MACs join tokens.
// Changing it invalidates every token of every cluster.
const Purpose = "ecom-agent join-token v1"

// Prefix starts every token of this format.
const Prefix = "EA1"

const (
	sep        = "::"
	hashPrefix = "sha256:"
	idBytes    = 6
	macBytes   = 16
)

// Format is the shape of a token, for error messages.
const Format = Prefix + sep + hashPrefix + "<64 hex>" + sep + "<id>.<expiry>.<mac>"

// Errors a caller can tell apart with errors.Is.
var (
	// ErrMalformed: the string is not a join token of this format.
	ErrMalformed = errors.New("not an ecom-agent join token")
	// ErrNotIssued: the MAC does not match; the token was made with
	// another cluster secret or cluster name, or was altered.
	ErrNotIssued = errors.New("not issued by this cluster (wrong cluster secret or cluster name)")
	// ErrExpired: the token's expiry has passed.
	ErrExpired = errors.New("join token expired")
	// ErrCAMismatch: the CA a node sees is not the one it was told to trust.
	ErrCAMismatch = errors.New("cluster CA does not match the pinned hash")
)

// Token is a parsed or newly made join token. The zero Token is invalid.
type Token struct {
	id      string // 2*idBytes lowercase hex digits
	expires int64  // Unix seconds; 0 means never
	caHash  string // "sha256:" + 64 lowercase hex digits
	mac     [macBytes]byte
}

// New makes a token for the cluster named clusterName with the given
// secret, pinning caHash ("sha256:<64 hex>", see pki.CAHash). It expires
// ttl after now; ttl 0 makes a token that never expires.
func New(secret []byte, clusterName, caHash string, ttl time.Duration, now time.Time) (Token, error) {
	if len(secret) == 0 {
		return Token{}, errors.New("join token: the cluster secret is empty")
	}
	h, err := ParseCAHash(caHash)
	if err != nil {
		return Token{}, err
	}
	if ttl < 0 {
		return Token{}, fmt.Errorf("join token: ttl %s is negative; use 0 for a token that never expires", ttl)
	}
	var exp int64
	if ttl > 0 {
		// Round up so that a token never lives shorter than asked.
		e := now.Add(ttl)
		exp = e.Unix()
		if e.Nanosecond() != 0 {
			exp++
		}
		if exp <= 0 {
			return Token{}, fmt.Errorf("join token: expiry %s is not after 1970", e.UTC().Format(time.RFC3339))
		}
	}
	var id [idBytes]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Token{}, fmt.Errorf("join token: random id: %w", err)
	}
	t := Token{id: hex.EncodeToString(id[:]), expires: exp, caHash: h}
	t.mac = t.sum(secret, clusterName)
	return t, nil
}

// sum is the token's MAC under the cluster's key.
func (t Token) sum(secret []byte, clusterName string) [macBytes]byte {
	key := peer.DeriveKey(secret, Purpose, clusterName)
	m := hmac.New(sha256.New, key[:])
	// Every field has a fixed alphabet without NUL, so NUL-separated
	// fields cannot be shifted into one another.
	m.Write([]byte(Prefix + "\x00" + t.id + "\x00" + strconv.FormatInt(t.expires, 10) + "\x00" + t.caHash))
	return [macBytes]byte(m.Sum(nil))
}

// ID is the token's public name, safe to log.
func (t Token) ID() string { return t.id }

// CAHash is the pinned CA hash, "sha256:<64 hex>".
func (t Token) CAHash() string { return t.caHash }

// Expires is when the token stops being accepted; the zero time if never.
func (t Token) Expires() time.Time {
	if t.expires == 0 {
		return time.Time{}
	}
	return time.Unix(t.expires, 0).UTC()
}

// String is the whole token, a credential: print it for the operator, never
// log it (slog gets LogValue, which shows only the id).
func (t Token) String() string {
	return Prefix + sep + t.caHash + sep + t.id + "." + strconv.FormatInt(t.expires, 10) + "." + hex.EncodeToString(t.mac[:])
}

// LogValue keeps the credential out of slog output: only the id shows.
func (t Token) LogValue() slog.Value { return slog.StringValue("join-token " + t.id) }

// Parse reads a token, ignoring surrounding white space. It checks the
// format only; Verify checks that the cluster issued it.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	bad := func(what string) (Token, error) {
		return Token{}, fmt.Errorf("%w: %s; want %s", ErrMalformed, what, Format)
	}
	parts := strings.Split(s, sep)
	if len(parts) != 3 {
		if s == "" {
			return bad("the token is empty")
		}
		return bad(fmt.Sprintf("it has %d %q-separated parts, not 3", len(parts), sep))
	}
	if parts[0] != Prefix {
		if len(parts[0]) > len(Prefix)+4 {
			return bad(fmt.Sprintf("it does not start with %q", Prefix))
		}
		return bad(fmt.Sprintf("it starts with %q, not %q", parts[0], Prefix))
	}
	if p := hashProblem(parts[1]); p != "" {
		return bad(fmt.Sprintf("the CA hash %q is invalid: %s (lower case)", parts[1], p))
	}
	f := strings.Split(parts[2], ".")
	if len(f) != 3 {
		return bad(fmt.Sprintf("the last part has %d dot-separated fields, not 3 (id, expiry, mac)", len(f)))
	}
	if !isLowerHex(f[0], 2*idBytes) {
		return bad(fmt.Sprintf("the id %q is not %d lower-case hex digits", f[0], 2*idBytes))
	}
	exp, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || exp < 0 || strconv.FormatInt(exp, 10) != f[1] {
		return bad(fmt.Sprintf("the expiry %q is not a Unix time in seconds (0 for never)", f[1]))
	}
	if !isLowerHex(f[2], 2*macBytes) {
		return bad(fmt.Sprintf("the mac is not %d lower-case hex digits", 2*macBytes))
	}
	t := Token{id: f[0], expires: exp, caHash: parts[1]}
	mac, _ := hex.DecodeString(f[2])
	t.mac = [macBytes]byte(mac)
	return t, nil
}

// Verify checks that the token was made with this cluster's secret and
// name, unaltered, and has not expired at now.
func (t Token) Verify(secret []byte, clusterName string, now time.Time) error {
	if t.id == "" {
		return fmt.Errorf("%w: the token is empty", ErrMalformed)
	}
	if len(secret) == 0 {
		return errors.New("cannot verify join token: the cluster secret is empty")
	}
	want := t.sum(secret, clusterName)
	if subtle.ConstantTimeCompare(want[:], t.mac[:]) != 1 {
		return fmt.Errorf("join token %s: %w", t.id, ErrNotIssued)
	}
	if t.expires != 0 && now.Unix() >= t.expires {
		exp := t.Expires()
		return fmt.Errorf("join token %s: %w at %s (%s ago); create a new one with `ecom-agent token create` on a control-plane node",
			t.id, ErrExpired, exp.Format(time.RFC3339), now.Sub(exp).Round(time.Second))
	}
	return nil
}

// ParseCAHash checks a CA hash "sha256:<64 hex>", as an operator may
// write it, and returns it with the hex in lower case.
func ParseCAHash(s string) (string, error) {
	if p := hashProblem(strings.ToLower(s)); p != "" {
		return "", fmt.Errorf("CA hash %q: %s", s, p)
	}
	return strings.ToLower(s), nil
}

// hashProblem says what is wrong with a CA hash in canonical form
// (lower-case hex), or "" if nothing is.
func hashProblem(s string) string {
	rest, ok := strings.CutPrefix(s, hashPrefix)
	if !ok {
		return `it does not start with "sha256:"`
	}
	if !isLowerHex(rest, 2*sha256.Size) {
		return fmt.Sprintf("it is not %q followed by %d hex digits", hashPrefix, 2*sha256.Size)
	}
	return ""
}

// isLowerHex reports whether s is n lower-case hex digits. Tokens are
// written in lower case only, so each token has exactly one spelling.
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
