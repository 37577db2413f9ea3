// Package token is ecom-agent's join token: the short string an operator
// hands a joining worker. It pins the cluster CA the worker must see and
// authenticates the worker to a control-plane agent, like kubeadm's
// bootstrap token with --discovery-token-ca-cert-hash, or k3s's
// K10<hash>::<credentials> tokens.
//
// A token looks like
//
//	EA1::sha256:<64 hex>::<id>.<secret>
//
// where
//
//   - EA1 is the format and its version.
//   - sha256:<64 hex> is the SHA-256 of the cluster CA certificate's
//     SubjectPublicKeyInfo (pki.CAHash), the same value kubeadm pins and
//     `openssl x509 -in ca.crt -pubkey -noout | openssl pkey -pubin -outform der | sha256sum`
//     prints.
//   - id is 12 random hex digits naming the token in logs and in
//     `token list`; it is not a credential.
//   - secret is 32 random hex digits (128 bits), the credential.
//
// The cluster keeps a Record of every token in etcd (Store): its id, the
// SHA-256 of its secret (never the secret), what it may be used for, when
// it expires, who made it. A token is accepted only while its record is
// there and unexpired, so a token is listed, expires by itself and is
// revoked by deleting its record; no key derived from the cluster secret
// is involved, and a worker holds no secret that makes tokens.
//
// The token is a bearer credential: a joiner sends it only over a TLS
// connection whose server certificate chains to the CA the token pins
// (CheckCA), never before that check, or whoever answers first learns it.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Prefix starts every token of this format.
const Prefix = "EA1"

const (
	sep         = "::"
	hashPrefix  = "sha256:"
	idBytes     = 6
	secretBytes = 16
)

// Format is the shape of a token, for error messages.
const Format = Prefix + sep + hashPrefix + "<64 hex>" + sep + "<id>.<secret>"

// Errors a caller can tell apart with errors.Is.
var (
	// ErrMalformed: the string is not a join token of this format.
	ErrMalformed = errors.New("not an ecom-agent join token")
	// ErrUnknown: no record of the token: never made by this cluster,
	// deleted (revoked), or pruned after it expired.
	ErrUnknown = errors.New("not a token of this cluster (unknown, deleted or expired long ago)")
	// ErrExpired: the token's expiry has passed.
	ErrExpired = errors.New("join token expired")
	// ErrUsage: the token may not be used for what was asked.
	ErrUsage = errors.New("join token not valid for this use")
	// ErrCAMismatch: the CA a node sees is not the one it was told to trust.
	ErrCAMismatch = errors.New("cluster CA does not match the pinned hash")
)

// Token is a parsed or newly made join token. The zero Token is invalid.
type Token struct {
	id     string // 2*idBytes lowercase hex digits
	secret string // 2*secretBytes lowercase hex digits
	caHash string // "sha256:" + 64 lowercase hex digits
}

// New makes a token pinning caHash ("sha256:<64 hex>", see pki.CAHash),
// with a fresh random id and secret. It is a credential only once its
// Record is in the cluster's Store.
func New(caHash string) (Token, error) {
	h, err := ParseCAHash(caHash)
	if err != nil {
		return Token{}, err
	}
	var id [idBytes]byte
	var sec [secretBytes]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Token{}, fmt.Errorf("join token: random id: %w", err)
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return Token{}, fmt.Errorf("join token: random secret: %w", err)
	}
	return Token{id: hex.EncodeToString(id[:]), secret: hex.EncodeToString(sec[:]), caHash: h}, nil
}

// ID is the token's public name, safe to log.
func (t Token) ID() string { return t.id }

// CAHash is the pinned CA hash, "sha256:<64 hex>".
func (t Token) CAHash() string { return t.caHash }

// SecretHash is what a Record keeps of the token's secret: its SHA-256,
// in hex.
func (t Token) SecretHash() string {
	s := sha256.Sum256([]byte(t.secret))
	return hex.EncodeToString(s[:])
}

// String is the whole token, a credential: print it for the operator, never
// log it (slog gets LogValue, which shows only the id).
func (t Token) String() string {
	return Prefix + sep + t.caHash + sep + t.id + "." + t.secret
}

// LogValue keeps the credential out of slog output: only the id shows.
func (t Token) LogValue() slog.Value { return slog.StringValue("join-token " + t.id) }

// Format keeps the credential out of fmt output (every verb shows the id);
// String is the way to print the token itself.
func (t Token) Format(f fmt.State, _ rune) { fmt.Fprintf(f, "join-token %s", t.id) }

// Parse reads a token, ignoring surrounding white space. It checks the
// format only; a Record checks the rest.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	bad := func(what string) (Token, error) {
		return Token{}, fmt.Errorf("%w: %s; want %s (ecom-agent token create prints one)", ErrMalformed, what, Format)
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
		// Not echoed: parts pasted in the wrong order would show the
		// secret.
		return bad(fmt.Sprintf("its second part, the CA hash, is invalid: %s (lower case)", p))
	}
	id, sec, ok := strings.Cut(parts[2], ".")
	if !ok || strings.Contains(sec, ".") {
		return bad("the last part is not <id>.<secret>")
	}
	if !isLowerHex(id, 2*idBytes) {
		return bad(fmt.Sprintf("the id %q is not %d lower-case hex digits", id, 2*idBytes))
	}
	if !isLowerHex(sec, 2*secretBytes) {
		return bad(fmt.Sprintf("the secret is not %d lower-case hex digits", 2*secretBytes))
	}
	return Token{id: id, secret: sec, caHash: parts[1]}, nil
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

// Usage is what a token may be used for.
type Usage string

// UsageWorker: a worker joins with it (its kubelet and kube-proxy
// credentials and the gossip key). The only usage so far.
const UsageWorker Usage = "worker"

// Record is what the cluster keeps of a token.
type Record struct {
	ID string `json:"id"`
	// SecretSHA256 is Token.SecretHash: the secret itself is kept nowhere.
	SecretSHA256 string    `json:"secret_sha256"`
	CAHash       string    `json:"ca_hash"`
	Usages       []Usage   `json:"usages"`
	Created      time.Time `json:"created"`
	// Expires is when the token stops being accepted; zero for never.
	Expires time.Time `json:"expires,omitzero"`
	// CreatedBy names the node and user that made it; Description is the
	// operator's note.
	CreatedBy   string `json:"created_by,omitempty"`
	Description string `json:"description,omitempty"`
}

// NewRecord is the record of t for usages, made at now, expiring ttl
// after it (0: never).
func NewRecord(t Token, usages []Usage, now time.Time, ttl time.Duration) (Record, error) {
	if ttl < 0 {
		return Record{}, fmt.Errorf("join token: ttl %s is negative; use 0 for a token that never expires", ttl)
	}
	if len(usages) == 0 {
		return Record{}, errors.New("join token: no usage")
	}
	r := Record{ID: t.id, SecretSHA256: t.SecretHash(), CAHash: t.caHash, Usages: usages, Created: now.UTC().Truncate(time.Second)}
	if ttl > 0 {
		r.Expires = now.Add(ttl).UTC().Truncate(time.Second).Add(time.Second)
	}
	return r, nil
}

// Expired reports whether the record's token is no longer accepted at now.
func (r Record) Expired(now time.Time) bool { return !r.Expires.IsZero() && !now.Before(r.Expires) }

// Check accepts t for usage at now: the record is t's, it allows usage,
// it has not expired.
func (r Record) Check(t Token, usage Usage, now time.Time) error {
	if r.ID != t.id || subtle.ConstantTimeCompare([]byte(r.SecretSHA256), []byte(t.SecretHash())) != 1 {
		return fmt.Errorf("join token %s: %w", t.id, ErrUnknown)
	}
	if r.Expired(now) {
		return fmt.Errorf("join token %s: %w at %s (%s ago); create a new one with `ecom-agent token create` on a control-plane node",
			t.id, ErrExpired, r.Expires.Format(time.RFC3339), now.Sub(r.Expires).Round(time.Second))
	}
	for _, u := range r.Usages {
		if u == usage {
			return nil
		}
	}
	return fmt.Errorf("join token %s: %w: it allows %v, not %q", t.id, ErrUsage, r.Usages, usage)
}
