package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"slices"
	"strings"
	"testing"
)

// TestSignRequest: a worker's request is signed over its own public key,
// with the subject, names and usages the spec says whatever the request
// asks for; a request whose signature does not verify is refused.
func TestSignRequest(t *testing.T) {
	c := &clock{now: epoch()}
	ca, _, err := generateCA(CA, Options{Now: c.Now}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:w-1", Organization: []string{"system:masters"}},
		DNSNames:    []string{"evil.example"},
		IPAddresses: []net.IP{net.ParseIP("10.0.0.1")},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	spec := KubeletClientCert(Node{Name: "w-1"})
	certPEM, err := ca.SignRequest(spec, csrPEM, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Error("not signed over the request's key")
	}
	if cert.Subject.CommonName != "system:node:w-1" || !slices.Equal(cert.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("subject %s: want the spec's, not the request's", cert.Subject)
	}
	if len(cert.DNSNames) > 0 || len(cert.IPAddresses) > 0 {
		t.Errorf("names %v %v copied from the request", cert.DNSNames, cert.IPAddresses)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: epoch(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("does not verify as a client certificate: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: epoch(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("verifies as a server certificate")
	}

	// A tampered request: its signature no longer verifies.
	bad := slices.Clone(der)
	bad[len(bad)-5] ^= 0xff
	_, err = ca.SignRequest(spec, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: bad}), Options{Now: c.Now})
	if err == nil {
		t.Fatal("a tampered request was signed")
	}
	if _, err := ca.SignRequest(spec, []byte("garbage"), Options{Now: c.Now}); err == nil || !strings.Contains(err.Error(), "not a PEM certificate request") {
		t.Errorf("garbage: %v", err)
	}
}
