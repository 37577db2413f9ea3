package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// ReasonKind classifies why a leaf certificate cannot be reused.
type ReasonKind int

// The reasons a leaf certificate is (re-)issued, most serious first.
const (
	// ReasonNone means the certificate is reusable.
	ReasonNone ReasonKind = iota
	// ReasonMissing means the certificate or its key does not exist.
	ReasonMissing
	// ReasonUnreadable means the certificate or key does not parse.
	ReasonUnreadable
	// ReasonKeyMismatch means the key does not belong to the certificate.
	ReasonKeyMismatch
	// ReasonNotYetValid means the certificate's NotBefore is in the future.
	ReasonNotYetValid
	// ReasonExpired means the certificate has expired.
	ReasonExpired
	// ReasonWrongCA means the certificate does not chain to the current CA.
	ReasonWrongCA
	// ReasonSubjectChanged means the CN or O differ from the spec.
	ReasonSubjectChanged
	// ReasonSANsChanged means the DNS or IP SANs differ from the spec.
	ReasonSANsChanged
	// ReasonUsagesChanged means the key usage or extended key usages
	// differ from the spec.
	ReasonUsagesChanged
	// ReasonKeyAlgorithmChanged means the key is not of the configured
	// algorithm.
	ReasonKeyAlgorithmChanged
	// ReasonRenewal means the certificate expires within the renewal window.
	ReasonRenewal
)

// Reason says why a leaf certificate cannot be reused, with the detail an
// operator needs ("SANs changed (added api.example.com)").
type Reason struct {
	Kind   ReasonKind
	Detail string
}

// Reusable reports whether r says the certificate can be kept.
func (r Reason) Reusable() bool { return r.Kind == ReasonNone }

// String describes the reason, "SANs changed (added api.example.com)".
func (r Reason) String() string {
	var s string
	switch r.Kind {
	case ReasonNone:
		s = "valid"
	case ReasonMissing:
		s = "missing"
	case ReasonUnreadable:
		s = "unreadable"
	case ReasonKeyMismatch:
		s = "key does not match certificate"
	case ReasonNotYetValid:
		s = "not yet valid"
	case ReasonExpired:
		s = "expired"
	case ReasonWrongCA:
		s = "not signed by the current CA"
	case ReasonSubjectChanged:
		s = "subject changed"
	case ReasonSANsChanged:
		s = "SANs changed"
	case ReasonUsagesChanged:
		s = "key usages changed"
	case ReasonKeyAlgorithmChanged:
		s = "key algorithm changed"
	case ReasonRenewal:
		s = "due for renewal"
	default:
		s = fmt.Sprintf("reason %d", int(r.Kind))
	}
	if r.Detail != "" {
		s += " (" + r.Detail + ")"
	}
	return s
}

// MarshalText makes a Reason print as its String in JSON and logs.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Check reports whether the certificate and key in certPEM and keyPEM can
// be kept for spec under the CA certificate ca at opts.Now, and if not,
// why. A nil or empty certPEM or keyPEM means the file is missing. The
// error is non-nil only when the inputs themselves are unusable (an
// invalid spec or options, a nil CA), never because of the certificate.
func Check(certPEM, keyPEM []byte, ca *x509.Certificate, spec CertSpec, opts Options) (Reason, error) {
	opts, err := opts.resolve()
	if err != nil {
		return Reason{}, err
	}
	if err := spec.validate(); err != nil {
		return Reason{}, err
	}
	if ca == nil {
		return Reason{}, fmt.Errorf("%s: no CA certificate to check against", spec.Name)
	}
	if len(certPEM) == 0 {
		return Reason{ReasonMissing, "no certificate"}, nil
	}
	if len(keyPEM) == 0 {
		return Reason{ReasonMissing, "no private key"}, nil
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return Reason{ReasonUnreadable, "certificate: " + err.Error()}, nil
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return Reason{ReasonUnreadable, "private key: " + err.Error()}, nil
	}
	if !keyMatches(cert.PublicKey, key) {
		return Reason{Kind: ReasonKeyMismatch}, nil
	}
	now := opts.Now()
	if now.Before(cert.NotBefore) {
		return Reason{ReasonNotYetValid, "valid from " + cert.NotBefore.UTC().Format(time.RFC3339)}, nil
	}
	if !now.Before(cert.NotAfter) {
		return Reason{ReasonExpired, "at " + cert.NotAfter.UTC().Format(time.RFC3339)}, nil
	}
	if r := checkChain(cert, ca, spec, now, []x509.ExtKeyUsage{x509.ExtKeyUsageAny}); !r.Reusable() {
		return r, nil
	}
	if r := checkSubject(cert, spec); !r.Reusable() {
		return r, nil
	}
	if r := checkSANs(cert, spec); !r.Reusable() {
		return r, nil
	}
	if r := checkUsages(cert, spec); !r.Reusable() {
		return r, nil
	}
	// With the EKUs equal, this verifies for exactly the intended ones.
	if r := checkChain(cert, ca, spec, now, spec.Usages); !r.Reusable() {
		return r, nil
	}
	if have := keyAlgorithm(cert.PublicKey); have != opts.KeyAlgorithm {
		return Reason{ReasonKeyAlgorithmChanged, have + " → " + opts.KeyAlgorithm}, nil
	}
	// A leaf that already ends with its CA cannot be renewed to last
	// longer; re-issuing it on every run would only churn.
	if left := cert.NotAfter.Sub(now); left < opts.RenewBefore && cert.NotAfter.Before(ca.NotAfter) {
		return Reason{ReasonRenewal, fmt.Sprintf("expires %s, in %s; renewal window %s",
			cert.NotAfter.UTC().Format(time.RFC3339), roundDuration(left), roundDuration(opts.RenewBefore))}, nil
	}
	return Reason{}, nil
}

// checkChain verifies cert against ca at now for the given usages.
func checkChain(cert, ca *x509.Certificate, spec CertSpec, now time.Time, usages []x509.ExtKeyUsage) Reason {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: usages})
	if err == nil {
		return Reason{}
	}
	if cert.CheckSignatureFrom(ca) != nil {
		return Reason{ReasonWrongCA, fmt.Sprintf("issued by %q, current %s is %q",
			cert.Issuer.String(), spec.CA, ca.Subject.String())}
	}
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.IncompatibleUsage {
		return Reason{ReasonUsagesChanged, err.Error()}
	}
	return Reason{ReasonWrongCA, err.Error()}
}

func checkSubject(cert *x509.Certificate, spec CertSpec) Reason {
	var diffs []string
	if cert.Subject.CommonName != spec.CommonName {
		diffs = append(diffs, fmt.Sprintf("CN %q → %q", cert.Subject.CommonName, spec.CommonName))
	}
	if added, removed := diffSets(cert.Subject.Organization, spec.Organization); len(added)+len(removed) > 0 {
		diffs = append(diffs, fmt.Sprintf("O %q → %q", cert.Subject.Organization, spec.Organization))
	}
	if len(diffs) > 0 {
		return Reason{ReasonSubjectChanged, strings.Join(diffs, ", ")}
	}
	return Reason{}
}

func checkSANs(cert *x509.Certificate, spec CertSpec) Reason {
	var have, want []string
	for _, d := range cert.DNSNames {
		have = append(have, strings.ToLower(d))
	}
	for _, ip := range cert.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			have = append(have, a.Unmap().String())
		}
	}
	for _, d := range spec.DNSNames {
		want = append(want, strings.ToLower(d))
	}
	for _, ip := range spec.IPs {
		want = append(want, ip.Unmap().String())
	}
	added, removed := diffSets(have, want)
	if len(added)+len(removed) == 0 {
		return Reason{}
	}
	var parts []string
	if len(added) > 0 {
		parts = append(parts, "added "+strings.Join(added, ", "))
	}
	if len(removed) > 0 {
		parts = append(parts, "removed "+strings.Join(removed, ", "))
	}
	return Reason{ReasonSANsChanged, strings.Join(parts, "; ")}
}

func checkUsages(cert *x509.Certificate, spec CertSpec) Reason {
	if want := leafKeyUsage(cert.PublicKey); cert.KeyUsage != want {
		return Reason{ReasonUsagesChanged, fmt.Sprintf("key usage %#x, want %#x", cert.KeyUsage, want)}
	}
	if cert.IsCA {
		return Reason{ReasonUsagesChanged, "certificate is a CA"}
	}
	var have, want []string
	for _, u := range cert.ExtKeyUsage {
		have = append(have, extKeyUsageName(u))
	}
	for _, u := range spec.Usages {
		want = append(want, extKeyUsageName(u))
	}
	added, removed := diffSets(have, want)
	if len(added)+len(removed) == 0 && len(cert.UnknownExtKeyUsage) == 0 {
		return Reason{}
	}
	return Reason{ReasonUsagesChanged, fmt.Sprintf("extended key usage %v → %v", have, want)}
}

// extKeyUsageName names the usages this package issues; others by number.
func extKeyUsageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageAny:
		return "any"
	}
	return fmt.Sprintf("eku(%d)", int(u))
}

// diffSets returns the sorted elements of want missing from have (added)
// and of have missing from want (removed); duplicates do not matter.
func diffSets(have, want []string) (added, removed []string) {
	for _, w := range want {
		if !slices.Contains(have, w) && !slices.Contains(added, w) {
			added = append(added, w)
		}
	}
	for _, h := range have {
		if !slices.Contains(want, h) && !slices.Contains(removed, h) {
			removed = append(removed, h)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed
}

// roundDuration prints d in days when it is at least two days long.
func roundDuration(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
	return d.Round(time.Minute).String()
}
