package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func TestServiceAccountKey(t *testing.T) {
	s, root, _ := newTestStore(t, KeyECDSAP256)
	out, err := s.EnsureServiceAccountKey()
	if err != nil || out.Action != Created {
		t.Fatalf("%v %v", out, err)
	}
	key, err := parseKeyPEM(readFile(t, root, ServiceAccountKey))
	if err != nil {
		t.Fatal(err)
	}
	if keyAlgorithm(key.Public()) != KeyECDSAP256 {
		t.Errorf("sa.key is %s", keyAlgorithm(key.Public()))
	}
	pubPEM := readFile(t, root, ServiceAccountPub)
	b, _ := pem.Decode(pubPEM)
	if b == nil || b.Type != "PUBLIC KEY" {
		t.Fatalf("sa.pub is not a PKIX PUBLIC KEY PEM: %q", pubPEM)
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil || !keyMatches(pub, key) {
		t.Fatalf("sa.pub does not match sa.key: %v", err)
	}
	keyBefore := readFile(t, root, ServiceAccountKey)

	// A wrong or missing sa.pub is derived again; sa.key is kept.
	writeFile(t, root, ServiceAccountPub, []byte("stale"), 0o644)
	out, err = s.EnsureServiceAccountKey()
	if err != nil || out.Action != Reissued || out.Reason.Kind != ReasonKeyMismatch {
		t.Fatalf("stale pub: %v %v", out, err)
	}
	mustRemove(t, root, ServiceAccountPub)
	out, err = s.EnsureServiceAccountKey()
	if err != nil || out.Action != Reissued || out.Reason.Kind != ReasonMissing {
		t.Fatalf("missing pub: %v %v", out, err)
	}
	if !bytes.Equal(readFile(t, root, ServiceAccountPub), pubPEM) || !bytes.Equal(readFile(t, root, ServiceAccountKey), keyBefore) {
		t.Error("sa.pub not restored, or sa.key changed")
	}

	// Another algorithm configured later keeps the existing key.
	before := snapshot(t, root)
	s2 := NewStore(root, Options{KeyAlgorithm: KeyRSA2048})
	if out, err := s2.EnsureServiceAccountKey(); err != nil || out.Action != Reused {
		t.Fatalf("other algorithm: %v %v", out, err)
	}
	sameFiles(t, before, snapshot(t, root))
}

func TestServiceAccountKeyNeverReplaced(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*testing.T, *Store)
	}{
		{"garbage key", func(t *testing.T, s *Store) {
			writeFile(t, s.root, ServiceAccountKey, []byte("garbage"), 0o600)
		}},
		{"public key without private key", func(t *testing.T, s *Store) {
			mustRemove(t, s.root, ServiceAccountKey)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, root, _ := newTestStore(t, KeyECDSAP256)
			if _, err := s.EnsureServiceAccountKey(); err != nil {
				t.Fatal(err)
			}
			tc.edit(t, s)
			before := snapshot(t, root)
			_, err := s.EnsureServiceAccountKey()
			var caErr *CAError
			if !errors.As(err, &caErr) || !strings.HasPrefix(err.Error(), "sa: ") {
				t.Errorf("err = %v", err)
			}
			sameFiles(t, before, snapshot(t, root))
		})
	}
}

func TestCombinedPEM(t *testing.T) {
	s, _, c := setUp(t, KeyECDSAP256)
	a, err := s.LoadAuthority(CA)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := a.Issue(KubeletServingCert(testNode()), s.opts)
	if err != nil {
		t.Fatal(err)
	}
	combined := kp.CombinedPEM()
	back, err := ParseCombinedPEM(combined)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Cert.Equal(kp.Cert) || !bytes.Equal(back.KeyPEM, kp.KeyPEM) || !bytes.Equal(back.CertPEM, kp.CertPEM) {
		t.Error("round trip changed the pair")
	}
	// Key first works too; the result checks as the spec it was issued for.
	back, err = ParseCombinedPEM(append(append([]byte(nil), kp.KeyPEM...), kp.CertPEM...))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Check(back.CertPEM, back.KeyPEM, a.Cert(), KubeletServingCert(testNode()), Options{Now: c.Now})
	if err != nil || !r.Reusable() {
		t.Errorf("Check: %v %v", r, err)
	}
	other, err := a.Issue(KubeletClientCert(testNode()), s.opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCombinedPEM(append(append([]byte(nil), kp.CertPEM...), other.KeyPEM...)); err == nil {
		t.Error("mismatched pair accepted")
	}
	if _, err := ParseCombinedPEM(kp.CertPEM); err == nil {
		t.Error("certificate without key accepted")
	}
}

func TestCheckInputs(t *testing.T) {
	_, root, c := setUp(t, KeyECDSAP256)
	spec := ControlPlaneCerts(testNode())[0]
	certPEM, keyPEM := readFile(t, root, CertPath("apiserver")), readFile(t, root, KeyPath("apiserver"))
	ca := loadCert(t, root, "ca")
	opts := Options{Now: c.Now}
	if r, err := Check(certPEM, keyPEM, ca, spec, opts); err != nil || !r.Reusable() || r.String() != "valid" {
		t.Errorf("valid pair: %v %v", r, err)
	}
	if _, err := Check(certPEM, keyPEM, nil, spec, opts); err == nil {
		t.Error("nil CA accepted")
	}
	if _, err := Check(certPEM, keyPEM, ca, CertSpec{Name: "x"}, opts); err == nil {
		t.Error("invalid spec accepted")
	}
	if r, _ := Check(nil, keyPEM, ca, spec, opts); r.Kind != ReasonMissing {
		t.Errorf("no cert: %v", r)
	}
	// A leaf must verify for its own usage: a client certificate checked
	// as the apiserver's fails on subject, SANs and usages.
	clientPEM := readFile(t, root, CertPath("apiserver-kubelet-client"))
	clientKey := readFile(t, root, KeyPath("apiserver-kubelet-client"))
	if r, _ := Check(clientPEM, clientKey, ca, spec, opts); r.Reusable() {
		t.Error("client certificate accepted as apiserver")
	}
	spec.CommonName = "x"
	spec.Name = "apiserver-kubelet-client"
	spec.DNSNames, spec.IPs, spec.Organization = nil, nil, []string{"system:masters"}
	if r, _ := Check(clientPEM, clientKey, ca, spec, opts); r.Kind != ReasonSubjectChanged {
		t.Errorf("CN change: %v", r)
	}
	spec.CommonName = "kube-apiserver-kubelet-client"
	if r, _ := Check(clientPEM, clientKey, ca, spec, opts); r.Kind != ReasonUsagesChanged {
		t.Errorf("EKU change: %v", r)
	}
}
