package token

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
)

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
