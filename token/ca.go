package token

import (
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/ecom-platform/ecom-agent/pki"
)

// CheckCA checks that caCertPEM holds exactly one certificate, a CA, whose
// hash (pki.CAHash: SHA-256 of its SubjectPublicKeyInfo) is wantHash.
//
// A PEM with several certificates is refused rather than matched against
// any of them: a client trusting the whole bundle would trust the extra
// certificates too, so one matching certificate would vouch for the rest.
func CheckCA(caCertPEM []byte, wantHash string) error {
	want, err := ParseCAHash(wantHash)
	if err != nil {
		return err
	}
	cert, err := parseCA(caCertPEM)
	if err != nil {
		return err
	}
	if got := pki.CAHash(cert); subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return fmt.Errorf("%w: the CA presented (%q) has hash %s but %s was expected; "+
			"this node may be talking to another cluster; check the join address and the token or CA hash it was given",
			ErrCAMismatch, cert.Subject.CommonName, got, want)
	}
	return nil
}

// HashPEM returns the CA hash (pki.CAHash) of the single CA certificate in
// caCertPEM, refusing what CheckCA refuses: what a node pins on first
// contact when it has no token.
func HashPEM(caCertPEM []byte) (string, error) {
	cert, err := parseCA(caCertPEM)
	if err != nil {
		return "", err
	}
	return pki.CAHash(cert), nil
}

func parseCA(data []byte) (*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("cluster CA: unexpected PEM block %q; want a single CERTIFICATE", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		}
		certs = append(certs, c)
	}
	switch {
	case len(certs) == 0:
		return nil, fmt.Errorf("cluster CA: no PEM CERTIFICATE found")
	case len(certs) > 1:
		return nil, fmt.Errorf("cluster CA: %d certificates where one is expected; a CA bundle cannot be pinned by one hash", len(certs))
	case !certs[0].BasicConstraintsValid || !certs[0].IsCA:
		return nil, fmt.Errorf("cluster CA: %q is not a CA certificate", certs[0].Subject.CommonName)
	}
	return certs[0], nil
}
