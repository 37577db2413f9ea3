package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Authority is a CA certificate together with its private key: it can
// issue certificates. Only a control-plane node can have one; it is
// obtained from [Store.EnsureCA], [Store.LoadAuthority] or [ParseAuthority],
// all of which need the CA key. Code that has only the CA certificate
// (every worker) uses a plain *x509.Certificate from [Store.LoadCACert].
type Authority struct {
	name    CAName
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
}

// Name returns which CA a is.
func (a *Authority) Name() CAName { return a.name }

// Cert returns the CA certificate.
func (a *Authority) Cert() *x509.Certificate { return a.cert }

// CertPEM returns the CA certificate as PEM, for kubeconfigs and bundles.
func (a *Authority) CertPEM() []byte { return bytes.Clone(a.certPEM) }

// KeyPair is an issued certificate with its private key.
type KeyPair struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// CombinedPEM returns the certificate followed by the private key in one
// PEM document, the format of the kubelet's certificate store
// (/var/lib/kubelet/pki/kubelet-client-current.pem).
func (kp *KeyPair) CombinedPEM() []byte {
	out := make([]byte, 0, len(kp.CertPEM)+len(kp.KeyPEM))
	return append(append(out, kp.CertPEM...), kp.KeyPEM...)
}

// ParseCombinedPEM parses a PEM document holding a certificate and its
// private key, in either order, as written by CombinedPEM. It fails if the
// key does not belong to the (first) certificate.
func ParseCombinedPEM(data []byte) (*KeyPair, error) {
	cert, err := parseCertPEM(data)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(data)
	if err != nil {
		return nil, err
	}
	if !keyMatches(cert.PublicKey, key) {
		return nil, fmt.Errorf("private key does not match certificate %q", cert.Subject.CommonName)
	}
	keyPEM, err := marshalKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, Key: key, CertPEM: encodeCertPEM(cert), KeyPEM: keyPEM}, nil
}

// ParseAuthority returns the authority held in a CA certificate and key.
// It fails, with a *CAError, if the certificate is not a usable CA at
// opts.Now or the key does not belong to it.
func ParseAuthority(name CAName, certPEM, keyPEM []byte, opts Options) (*Authority, error) {
	opts = opts.withDefaults()
	if !name.valid() {
		return nil, fmt.Errorf("%s: unknown CA", name)
	}
	f := caFiles(name)
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, &CAError{Name: string(name), Problem: f.cert + " is not a readable certificate: " + err.Error(),
			Remedy: "restore " + f.cert + " from a backup or from another control-plane node", Err: err}
	}
	if err := checkCACert(name, cert, opts.Now()); err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, &CAError{Name: string(name), Problem: f.key + " is not a readable private key: " + err.Error(),
			Remedy: "restore " + f.key + " from a backup or from another control-plane node", Err: err}
	}
	if !keyMatches(cert.PublicKey, key) {
		return nil, &CAError{Name: string(name), Problem: f.key + " does not belong to " + f.cert,
			Remedy: "restore the matching " + f.key + " from a backup or from another control-plane node; " +
				"to replace the CA on purpose, move " + f.cert + ", " + f.key +
				" and every certificate the CA signed out of " + Dir + " and run again"}
	}
	return &Authority{name: name, cert: cert, certPEM: encodeCertPEM(cert), key: key}, nil
}

// checkCACert reports, as a *CAError, why cert cannot serve as CA name.
func checkCACert(name CAName, cert *x509.Certificate, now time.Time) error {
	f := caFiles(name)
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return &CAError{Name: string(name),
			Problem: fmt.Sprintf("%s (subject %q) is not a CA certificate (it needs basic constraints CA:TRUE and the certSign key usage)",
				f.cert, cert.Subject.String()),
			Remedy: "restore the CA certificate from a backup or from another control-plane node"}
	}
	if now.After(cert.NotAfter) {
		return &CAError{Name: string(name),
			Problem: fmt.Sprintf("%s expired at %s", f.cert, cert.NotAfter.UTC().Format(time.RFC3339)),
			Remedy: "CA rotation is not automatic: renew " + f.cert + " for the same key (for example " +
				"openssl x509 -in " + f.cert + " -signkey " + f.key + " -days 3650), or rotate the CA by hand"}
	}
	if now.Before(cert.NotBefore) {
		return &CAError{Name: string(name),
			Problem: fmt.Sprintf("%s is not valid before %s", f.cert, cert.NotBefore.UTC().Format(time.RFC3339)),
			Remedy:  "check this node's clock"}
	}
	return nil
}

// generateCA creates a new self-signed CA.
func generateCA(name CAName, opts Options) (*Authority, *KeyPair, error) {
	key, err := generateKey(opts.KeyAlgorithm)
	if err != nil {
		return nil, nil, err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name.commonName()},
		NotBefore:             now.Add(-backdate).UTC(),
		NotAfter:              now.Add(opts.CAValidity).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski,
	}
	kp, err := sign(tmpl, tmpl, key, key)
	if err != nil {
		return nil, nil, err
	}
	return &Authority{name: name, cert: kp.Cert, certPEM: kp.CertPEM, key: key}, kp, nil
}

// Issue creates a new key and a certificate for spec, signed by a. The
// certificate is valid from a few minutes ago (for clock skew) for
// opts.CertValidity, but never beyond the CA's own expiry.
func (a *Authority) Issue(spec CertSpec, opts Options) (*KeyPair, error) {
	opts, now, err := a.canSign(spec, opts)
	if err != nil {
		return nil, err
	}
	key, err := generateKey(opts.KeyAlgorithm)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	tmpl, err := a.template(spec, key.Public(), now, opts.CertValidity)
	if err != nil {
		return nil, err
	}
	kp, err := sign(tmpl, a.cert, key, a.key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	return kp, nil
}

// canSign resolves opts and checks that a may sign spec now: the spec is
// valid, names a as its CA, and a has not expired. It returns the
// resolved options and the time to sign at.
func (a *Authority) canSign(spec CertSpec, opts Options) (Options, time.Time, error) {
	opts, err := opts.resolve()
	if err != nil {
		return opts, time.Time{}, err
	}
	if err := spec.validate(); err != nil {
		return opts, time.Time{}, err
	}
	if spec.CA != a.name {
		return opts, time.Time{}, fmt.Errorf("%s: must be signed by %s, not by %s", spec.Name, spec.CA, a.name)
	}
	now := opts.Now()
	if !now.Before(a.cert.NotAfter) {
		return opts, time.Time{}, fmt.Errorf("%s: CA %s expired at %s", spec.Name, a.name, a.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return opts, now, nil
}

// template is the certificate a signs for spec and the public key pub.
func (a *Authority) template(spec CertSpec, pub crypto.PublicKey, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	notAfter := now.Add(validity)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   spec.CommonName,
			Organization: append([]string(nil), spec.Organization...),
		},
		NotBefore:             now.Add(-backdate).UTC(),
		NotAfter:              notAfter.UTC(),
		KeyUsage:              leafKeyUsage(pub),
		ExtKeyUsage:           append([]x509.ExtKeyUsage(nil), spec.Usages...),
		BasicConstraintsValid: true,
		DNSNames:              append([]string(nil), spec.DNSNames...),
		SubjectKeyId:          ski,
		AuthorityKeyId:        a.cert.SubjectKeyId,
	}
	for _, ip := range spec.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.Unmap().AsSlice()))
	}
	return tmpl, nil
}

// SignRequest signs a certificate for spec over the public key of a
// certificate signing request whose private key never left its node (a
// worker's kubelet). The request's own subject, names and extensions are
// ignored: the certificate says what spec says, so the caller decides the
// identity. The request's signature must verify (its sender holds the
// key). Returns the certificate in PEM.
func (a *Authority) SignRequest(spec CertSpec, csrPEM []byte, opts Options) ([]byte, error) {
	opts, now, err := a.canSign(spec, opts)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%s: not a PEM certificate request", spec.Name)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%s: the request's signature does not verify: %w", spec.Name, err)
	}
	tmpl, err := a.template(spec, csr.PublicKey, now, opts.CertValidity)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, csr.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("%s: create certificate: %w", spec.Name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// leafKeyUsage is the key usage of a leaf with the given public key:
// digital signature, plus key encipherment for RSA (TLS RSA key exchange).
func leafKeyUsage(pub crypto.PublicKey) x509.KeyUsage {
	if _, ok := pub.(*rsa.PublicKey); ok {
		return x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	return x509.KeyUsageDigitalSignature
}

// sign creates the certificate tmpl for key, signed by parent's signer.
func sign(tmpl, parent *x509.Certificate, key, signer crypto.Signer) (*KeyPair, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new certificate: %w", err)
	}
	keyPEM, err := marshalKeyPEM(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, Key: key, CertPEM: encodeCertPEM(cert), KeyPEM: keyPEM}, nil
}

// randomSerial returns a random positive serial number of up to 128 bits.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
