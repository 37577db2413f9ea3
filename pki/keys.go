package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
)

// PEM block types. Private keys are written the way kubeadm writes them
// (SEC 1 for ECDSA, PKCS #1 for RSA); PKCS #8 is accepted when reading.
const (
	pemCertificate = "CERTIFICATE"
	pemECKey       = "EC PRIVATE KEY"
	pemRSAKey      = "RSA PRIVATE KEY"
	pemPKCS8Key    = "PRIVATE KEY"
	pemPublicKey   = "PUBLIC KEY"
)

// generateKey returns a new private key of the given algorithm.
func generateKey(algorithm string) (crypto.Signer, error) {
	switch algorithm {
	case KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyRSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	return nil, fmt.Errorf("unknown key algorithm %q", algorithm)
}

// keyAlgorithm names the algorithm of a public key in Options' terms, or
// describes it when it is none of the supported ones.
func keyAlgorithm(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return KeyECDSAP256
		}
		return "ecdsa-" + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}

// marshalKeyPEM encodes a private key as PEM.
func marshalKeyPEM(key crypto.Signer) ([]byte, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: pemECKey, Bytes: der}), nil
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: pemRSAKey, Bytes: x509.MarshalPKCS1PrivateKey(k)}), nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", key)
}

// parseKeyPEM returns the first private key in data. Other blocks (such as
// the certificates of a combined PEM, or "EC PARAMETERS") are skipped.
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM private key block")
		}
		var (
			key any
			err error
		)
		switch b.Type {
		case pemECKey:
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case pemRSAKey:
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case pemPKCS8Key:
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", b.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", key)
		}
		switch signer.(type) {
		case *ecdsa.PrivateKey, *rsa.PrivateKey:
			return signer, nil
		}
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
}

// parseCertsPEM returns every certificate in data, in order; blocks of
// other types are skipped. It fails if there is none.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != pemCertificate {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, nil
}

// parseCertPEM returns the first certificate in data.
func parseCertPEM(data []byte) (*x509.Certificate, error) {
	certs, err := parseCertsPEM(data)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

func encodeCertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: c.Raw})
}

// marshalPublicKeyPEM encodes a public key as a PKIX "PUBLIC KEY" block.
func marshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: der}), nil
}

// keyMatches reports whether key is the private half of pub.
func keyMatches(pub crypto.PublicKey, key crypto.Signer) bool {
	p, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	return ok && p.Equal(key.Public())
}

// subjectKeyID computes a key identifier as in RFC 7093 section 2 method
// 1: the leftmost 160 bits of the SHA-256 of the subjectPublicKey bits.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// CAHash returns the pin of a CA certificate in kubeadm's
// --discovery-token-ca-cert-hash format: "sha256:" followed by the hex
// SHA-256 of the certificate's DER SubjectPublicKeyInfo.
func CAHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// NewRequest generates a key of opts' algorithm and a certificate signing
// request for it with the given subject, for a node whose certificate a
// CA on another node signs (a worker's kubelet): the key never leaves
// this node. It returns both in PEM.
func NewRequest(commonName string, organization []string, opts Options) (keyPEM, csrPEM []byte, err error) {
	opts, err = opts.resolve()
	if err != nil {
		return nil, nil, err
	}
	key, err := generateKey(opts.KeyAlgorithm)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: commonName, Organization: organization},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate request for %s: %w", commonName, err)
	}
	keyPEM, err = marshalKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return keyPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCertPEM returns the first certificate in data.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	certs, err := parseCertsPEM(data)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}
