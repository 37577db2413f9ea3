package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// CertStatus describes one certificate for `certs check-expiration`.
type CertStatus struct {
	// Name is the certificate's name ("etcd/server", "ca", "admin").
	Name string `json:"name"`
	// Path is where it is kept: a logical file path, or a kubeconfig.
	Path    string `json:"path"`
	Subject string `json:"subject"`
	Issuer  string `json:"issuer"`
	// NotAfter is when it expires; Residual is the time left until then,
	// negative once it has expired.
	NotAfter time.Time     `json:"not_after"`
	Residual time.Duration `json:"residual"`
	CA       bool          `json:"ca"`
	// SignedBy is the cluster CA whose certificate verifies this one's
	// signature (a self-signed CA names itself), or "" if none does.
	SignedBy string `json:"signed_by"`
	// WillRenew is true for a leaf the next run re-issues because it is
	// in the renewal window or expired. CAs are never renewed.
	WillRenew bool `json:"will_renew"`
	Expired   bool `json:"expired"`
	// Error is set, and the other fields are empty, if the certificate
	// could not be read.
	Error string `json:"error,omitempty"`
}

// Inspect describes the first certificate in certPEM, named name and kept
// at path, checking its signature against the CA certificates given
// (which may be nil or incomplete) at opts.Now. It is used for the files
// of the PKI directory and for certificates embedded in kubeconfigs.
func Inspect(name, path string, certPEM []byte, caCerts map[CAName]*x509.Certificate, opts Options) CertStatus {
	opts = opts.withDefaults()
	st := CertStatus{Name: name, Path: path}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	now := opts.Now()
	st.Subject = cert.Subject.String()
	st.Issuer = cert.Issuer.String()
	st.NotAfter = cert.NotAfter
	st.Residual = cert.NotAfter.Sub(now)
	st.CA = cert.IsCA
	st.Expired = !now.Before(cert.NotAfter)
	var signer *x509.Certificate
	for _, n := range CANames() {
		ca := caCerts[n]
		if ca != nil && bytes.Equal(cert.RawIssuer, ca.RawSubject) && cert.CheckSignatureFrom(ca) == nil {
			st.SignedBy, signer = string(n), ca
			break
		}
	}
	if !st.CA {
		// As in Check: a leaf that already ends with its CA is not renewed.
		capped := signer != nil && !cert.NotAfter.Before(signer.NotAfter)
		st.WillRenew = st.Expired || st.Residual < opts.RenewBefore && !capped
	}
	return st
}

// Inventory describes every certificate file (*.crt) under Dir, sorted by
// name, with signers taken from the CA certificates found there. A
// missing directory yields an empty inventory.
func (s *Store) Inventory() ([]CertStatus, error) {
	caCerts := make(map[CAName]*x509.Certificate)
	for _, n := range CANames() {
		if data, ok, err := s.read(CertPath(string(n))); err == nil && ok {
			if c, err := parseCertPEM(data); err == nil {
				caCerts[n] = c
			}
		}
	}
	base := s.root.Path(Dir)
	var out []CertStatus
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == base && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".crt") || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		rel, err := filepath.Rel(base, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		name := strings.TrimSuffix(rel, ".crt")
		data, err := s.root.ReadFile(CertPath(name))
		if err != nil {
			return err
		}
		out = append(out, Inspect(name, CertPath(name), data, caCerts, s.opts))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("inventory of %s: %w", Dir, err)
	}
	slices.SortFunc(out, func(a, b CertStatus) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
