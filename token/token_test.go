package token

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"log/slog"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
)

var (
	secret  = []byte("test-secret-0123456789abcdef0123456789")
	cluster = "shop-test"
	caHash  = "sha256:" + strings.Repeat("ab", 32)
	now     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func mustNew(t *testing.T, ttl time.Duration) Token {
	t.Helper()
	tok, err := New(secret, cluster, caHash, ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRoundTrip(t *testing.T) {
	tok := mustNew(t, 24*time.Hour)
	s := tok.String()
	if !regexp.MustCompile(`^EA1::sha256:[0-9a-f]{64}::[0-9a-f]{12}\.[0-9]+\.[0-9a-f]{32}$`).MatchString(s) {
		t.Fatalf("token %q does not have the documented shape", s)
	}
	got, err := Parse("  " + s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got != tok || got.String() != s {
		t.Fatalf("parsed %q, made %q", got, s)
	}
	if got.CAHash() != caHash || got.ID() != strings.Split(strings.Split(s, "::")[2], ".")[0] {
		t.Errorf("fields: hash %s id %s", got.CAHash(), got.ID())
	}
	if want := now.Add(24 * time.Hour); !got.Expires().Equal(want) {
		t.Errorf("expires %s, want %s", got.Expires(), want)
	}
	if err := got.Verify(secret, cluster, now); err != nil {
		t.Errorf("fresh token: %v", err)
	}
	if other := mustNew(t, 24*time.Hour); other.ID() == tok.ID() {
		t.Errorf("two tokens share the id %s", tok.ID())
	}
}

func TestUpperCaseHashAccepted(t *testing.T) {
	// An operator may paste a hash in upper case; the token spells it in
	// lower case, its only spelling.
	for _, in := range []string{strings.ToUpper(caHash), "sha256:" + strings.ToUpper(caHash[7:])} {
		tok, err := New(secret, cluster, in, time.Hour, now)
		if err != nil || tok.CAHash() != caHash || !strings.Contains(tok.String(), caHash) {
			t.Errorf("%s: %v, %q", in, err, tok.CAHash())
		}
	}
}

func TestTamperedFieldsFail(t *testing.T) {
	tok := mustNew(t, time.Hour)
	s := tok.String()
	parts := strings.Split(s, "::")
	f := strings.Split(parts[2], ".")
	flip := func(h string) string { // change the last hex digit
		last := h[len(h)-1]
		repl := byte('0')
		if last == '0' {
			repl = '1'
		}
		return h[:len(h)-1] + string(repl)
	}
	for name, bad := range map[string]string{
		"ca hash": parts[0] + "::" + flip(parts[1]) + "::" + parts[2],
		"id":      parts[0] + "::" + parts[1] + "::" + flip(f[0]) + "." + f[1] + "." + f[2],
		"expiry":  parts[0] + "::" + parts[1] + "::" + f[0] + "." + flip(f[1]) + "." + f[2],
		"longer":  parts[0] + "::" + parts[1] + "::" + f[0] + ".0." + f[2],
		"mac":     parts[0] + "::" + parts[1] + "::" + f[0] + "." + f[1] + "." + flip(f[2]),
	} {
		got, err := Parse(bad)
		if err != nil {
			t.Errorf("%s: tampered token does not parse: %v", name, err)
			continue
		}
		err = got.Verify(secret, cluster, now)
		if !errors.Is(err, ErrNotIssued) || !strings.Contains(err.Error(), "not issued by this cluster (wrong cluster secret or cluster name)") {
			t.Errorf("%s: tampered token: %v", name, err)
		}
	}
}

func TestWrongSecretOrCluster(t *testing.T) {
	tok := mustNew(t, time.Hour)
	for name, check := range map[string]error{
		"secret":  tok.Verify([]byte("another-secret-0123456789abcdef01234"), cluster, now),
		"cluster": tok.Verify(secret, "shop-prod", now),
	} {
		if !errors.Is(check, ErrNotIssued) || !strings.Contains(check.Error(), tok.ID()) {
			t.Errorf("wrong %s: %v", name, check)
		}
	}
	if err := tok.Verify(nil, cluster, now); err == nil {
		t.Error("empty secret verifies")
	}
	if err := (Token{}).Verify(secret, cluster, now); !errors.Is(err, ErrMalformed) {
		t.Errorf("zero token: %v", err)
	}
	// The key is the one documented: HKDF of the secret with Purpose and
	// the cluster name, so any agent of the cluster can recompute it.
	if Purpose != "ecom-agent join-token v1" {
		t.Errorf("Purpose changed to %q: every existing token would stop working", Purpose)
	}
}

func TestExpiry(t *testing.T) {
	tok := mustNew(t, time.Hour)
	if err := tok.Verify(secret, cluster, now.Add(time.Hour-time.Second)); err != nil {
		t.Errorf("a second before expiry: %v", err)
	}
	err := tok.Verify(secret, cluster, now.Add(3*time.Hour))
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("after expiry: %v", err)
	}
	for _, want := range []string{"expired at 2026-03-01T13:00:00Z", "(2h0m0s ago)", "ecom-agent token create"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("expiry error lacks %q: %v", want, err)
		}
	}
	// A forged expiry is a bad MAC, not an expired token: the MAC is
	// checked first so no claim of an unauthenticated token is believed.
	forged, _ := Parse(strings.Replace(tok.String(), "."+strconv.FormatInt(tok.Expires().Unix(), 10)+".", ".1.", 1))
	if err := forged.Verify(secret, cluster, now); !errors.Is(err, ErrNotIssued) {
		t.Errorf("forged expiry: %v", err)
	}

	forever := mustNew(t, 0)
	if !forever.Expires().IsZero() || !strings.Contains(forever.String(), ".0.") {
		t.Errorf("ttl 0: expires %s, token %s", forever.Expires(), forever)
	}
	if err := forever.Verify(secret, cluster, now.Add(100*365*24*time.Hour)); err != nil {
		t.Errorf("token without expiry, a century later: %v", err)
	}
	if _, err := New(secret, cluster, caHash, -time.Second, now); err == nil {
		t.Error("negative ttl accepted")
	}
	// A fractional second rounds the expiry up, never down.
	frac, _ := New(secret, cluster, caHash, 1500*time.Millisecond, now)
	if got := frac.Expires(); !got.Equal(now.Add(2 * time.Second)) {
		t.Errorf("1.5s ttl expires at %s", got)
	}
}

func TestNewRefuses(t *testing.T) {
	for name, err := range map[string]error{
		"empty secret": func() error { _, err := New(nil, cluster, caHash, 0, now); return err }(),
		"bad hash":     func() error { _, err := New(secret, cluster, "abc", 0, now); return err }(),
		"short hash":   func() error { _, err := New(secret, cluster, "sha256:abcd", 0, now); return err }(),
		"md5 hash":     func() error { _, err := New(secret, cluster, "md5:"+strings.Repeat("a", 32), 0, now); return err }(),
	} {
		if err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestParseErrors(t *testing.T) {
	good := mustNew(t, time.Hour).String()
	parts := strings.Split(good, "::")
	for in, want := range map[string]string{
		"":                                  "empty",
		"test-secret-0123456789abcdef01234": "1 \"::\"-separated parts",
		"K10" + good[3:]:                    `starts with "K10", not "EA1"`,
		"EA2" + good[3:]:                    `starts with "EA2"`,
		"EA1::" + "sha256:xyz::" + parts[2]: "CA hash",
		"EA1::" + strings.ToUpper(parts[1]) + "::" + parts[2]:                            "CA hash",
		parts[0] + "::" + parts[1] + "::abc.0." + strings.Repeat("a", 32):                "id \"abc\"",
		parts[0] + "::" + parts[1] + "::" + strings.ToUpper(parts[2]):                    "id",
		parts[0] + "::" + parts[1] + "::" + "abcdefabcdef.-1." + strings.Repeat("a", 32): "expiry",
		parts[0] + "::" + parts[1] + "::" + "abcdefabcdef.+1." + strings.Repeat("a", 32): "expiry",
		parts[0] + "::" + parts[1] + "::" + "abcdefabcdef.01." + strings.Repeat("a", 32): "expiry",
		parts[0] + "::" + parts[1] + "::" + "abcdefabcdef.1." + strings.Repeat("a", 31):  "mac",
		parts[0] + "::" + parts[1] + "::" + "abcdefabcdef.1":                             "3 (id, expiry, mac)",
		good + "::x": "4",
	} {
		_, err := Parse(in)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		for _, w := range []string{want, "not an ecom-agent join token", "want EA1::sha256:<64 hex>::<id>.<expiry>.<mac>"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Parse(%q): error lacks %q: %v", in, w, err)
			}
		}
	}
	// A pasted secret is never echoed back.
	if _, err := Parse("supersecretvalue::b::c"); strings.Contains(err.Error(), "supersecret") {
		t.Errorf("error echoes its input: %v", err)
	}
}

func TestLogValueHidesToken(t *testing.T) {
	tok := mustNew(t, time.Hour)
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("join", "token", tok)
	if strings.Contains(buf.String(), tok.String()) || !strings.Contains(buf.String(), tok.ID()) {
		t.Errorf("log line %q", buf.String())
	}
}

// newCA makes a real cluster CA with pki under a temporary root.
func newCA(t *testing.T) (*hostfs.Root, []byte, string) {
	t.Helper()
	root, err := hostfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := pki.NewStore(root, pki.Options{}).EnsureCA(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	return root, a.CertPEM(), pki.CAHash(a.Cert())
}

func TestCheckCA(t *testing.T) {
	root, caPEM, hash := newCA(t)
	if err := CheckCA(caPEM, hash); err != nil {
		t.Fatalf("own CA: %v", err)
	}
	if err := CheckCA(caPEM, "sha256:"+strings.ToUpper(hash[7:])); err != nil {
		t.Errorf("upper-case hash: %v", err)
	}
	if got, err := HashPEM(caPEM); err != nil || got != hash {
		t.Errorf("HashPEM %q %v, want %q", got, err, hash)
	}
	// The hash is the SPKI hash openssl computes, as kubeadm documents.
	if _, err := exec.LookPath("openssl"); err == nil {
		pub, err := exec.Command("openssl", "x509", "-in", root.Path(pki.CertPath(string(pki.CA))), "-pubkey", "-noout").Output()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("openssl", "pkey", "-pubin", "-outform", "der")
		cmd.Stdin = bytes.NewReader(pub)
		der, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(der)
		if want := "sha256:" + hex.EncodeToString(sum[:]); want != hash {
			t.Errorf("openssl says %s, pki.CAHash %s", want, hash)
		}
	}

	_, otherPEM, otherHash := newCA(t)
	err := CheckCA(otherPEM, hash)
	if !errors.Is(err, ErrCAMismatch) {
		t.Fatalf("another cluster's CA: %v", err)
	}
	for _, want := range []string{hash, otherHash, "another cluster"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("mismatch error lacks %q: %v", want, err)
		}
	}

	// A bundle cannot be pinned by one hash, even if one of its CAs matches.
	if err := CheckCA(append(bytes.Clone(caPEM), otherPEM...), hash); err == nil || !strings.Contains(err.Error(), "2 certificates") {
		t.Errorf("bundle: %v", err)
	}
	if err := CheckCA([]byte("not pem"), hash); err == nil {
		t.Error("garbage accepted")
	}
	if err := CheckCA(caPEM, "sha256:short"); err == nil {
		t.Error("malformed wanted hash accepted")
	}
	// A leaf certificate is not a CA.
	store := pki.NewStore(root, pki.Options{})
	a, err := store.LoadAuthority(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Issue(pki.CertSpec{Name: "leaf", CA: pki.CA, CommonName: "leaf", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	leafPEM := leaf.CertPEM
	leafHash, _ := HashPEM(leafPEM)
	if err := CheckCA(leafPEM, hash); err == nil || !strings.Contains(err.Error(), "not a CA") || leafHash != "" {
		t.Errorf("leaf certificate accepted as a CA: %v %q", err, leafHash)
	}
}

func TestPin(t *testing.T) {
	root, caPEM, hash := newCA(t)
	_, otherPEM, otherHash := newCA(t)
	pin := NewPin(root, "")
	if pin.Path() != DefaultPinPath {
		t.Fatalf("path %s", pin.Path())
	}
	if _, ok, err := pin.Load(); ok || err != nil {
		t.Fatalf("fresh node: pinned %v, %v", ok, err)
	}
	first, err := pin.CheckCert(caPEM)
	if err != nil || !first {
		t.Fatalf("first contact: first=%v %v", first, err)
	}
	data, _ := root.ReadFile(DefaultPinPath)
	if string(data) != hash+"\n" {
		t.Errorf("pin file %q", data)
	}
	fi, _ := root.Stat(DefaultPinPath)
	if fi.Mode().Perm() != PinMode {
		t.Errorf("pin mode %v", fi.Mode())
	}
	// Later contacts with the same CA pass; the pin is remembered across
	// Pin values (restarts).
	again := NewPin(root, DefaultPinPath)
	if first, err := again.Check("sha256:" + strings.ToUpper(hash[7:])); err != nil || first {
		t.Errorf("same CA again: first=%v %v", first, err)
	}
	first, err = again.CheckCert(otherPEM)
	if !errors.Is(err, ErrCAChanged) || first {
		t.Fatalf("other CA: first=%v %v", first, err)
	}
	want := "CA changed since first contact: pinned " + hash + ", now " + otherHash
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), DefaultPinPath) {
		t.Errorf("error %q lacks %q", err, want)
	}
	if data2, _ := root.ReadFile(DefaultPinPath); !bytes.Equal(data, data2) {
		t.Errorf("refused CA changed the pin: %q", data2)
	}

	// A corrupt pin is an error and is not overwritten.
	if _, err := root.WriteFile(DefaultPinPath, []byte("garbage\n"), PinMode); err != nil {
		t.Fatal(err)
	}
	if _, err := again.Check(hash); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt pin: %v", err)
	}
	if data, _ := root.ReadFile(DefaultPinPath); string(data) != "garbage\n" {
		t.Errorf("corrupt pin overwritten: %q", data)
	}
	if _, err := again.Check("nonsense"); err == nil {
		t.Error("malformed hash pinned")
	}
}

func TestPinConcurrentFirstContact(t *testing.T) {
	root, _, hash := newCA(t)
	_, _, other := newCA(t)
	pin := NewPin(root, "/var/lib/ecom-agent/ca-pin")
	var wg sync.WaitGroup
	results := make([]error, 16)
	firsts := make([]bool, 16)
	for i := range results {
		wg.Go(func() {
			h := hash
			if i%2 == 1 {
				h = other
			}
			firsts[i], results[i] = pin.Check(h)
		})
	}
	wg.Wait()
	pinned, ok, err := pin.Load()
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	nFirst := 0
	for i, err := range results {
		h := hash
		if i%2 == 1 {
			h = other
		}
		if firsts[i] {
			nFirst++
		}
		if (h == pinned) != (err == nil) {
			t.Errorf("check %d of %s with %s pinned: %v", i, h, pinned, err)
		}
	}
	if nFirst != 1 {
		t.Errorf("%d checks pinned, want exactly 1", nFirst)
	}
}
