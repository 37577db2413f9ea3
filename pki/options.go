// Package pki generates and keeps a node's Kubernetes PKI: the three CAs,
// the service-account key pair, the certificates the control plane reads
// from files, and the client certificates that are embedded in
// kubeconfigs.
//
// Files follow kubeadm's layout under /etc/kubernetes/pki so operators find
// them where they expect. Every file is handled kubeadm-style: a valid file
// is reused untouched, a leaf certificate that no longer fits is re-issued
// (and the reason is reported), a missing one is created, and a CA is never
// overwritten.
//
// Only a control-plane node holds CA private keys. They are reachable only
// through an [Authority], which [Store.EnsureCA] and [Store.LoadAuthority]
// return; a worker uses [Store.LoadCACert], which never reads a key.
package pki

import (
	"fmt"
	"time"
)

// The supported key algorithms; the names match config.KeyAlgorithm.
const (
	KeyECDSAP256 = "ecdsa-p256"
	KeyRSA2048   = "rsa-2048"
	KeyRSA3072   = "rsa-3072"
)

// Defaults used for the zero values of Options.
const (
	DefaultKeyAlgorithm = KeyECDSAP256
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour // 87600h, 10 years
	DefaultCertValidity = 365 * 24 * time.Hour      // 8760h, 1 year
	DefaultRenewBefore  = 30 * 24 * time.Hour       // 720h, 30 days
)

// backdate is how far before "now" every certificate's NotBefore is set,
// so that nodes whose clocks lag a little accept a fresh certificate.
const backdate = 5 * time.Minute

// Options controls how keys and certificates are generated and when a
// certificate is renewed. The zero value of each field means its default.
type Options struct {
	// KeyAlgorithm is the algorithm of every new private key: "ecdsa-p256"
	// (default), "rsa-2048" or "rsa-3072".
	KeyAlgorithm string
	// CAValidity is the lifetime of a new CA certificate (default 10 years).
	CAValidity time.Duration
	// CertValidity is the lifetime of a new leaf certificate (default 1
	// year); a leaf never outlives the CA that signs it.
	CertValidity time.Duration
	// RenewBefore is the renewal window: a leaf that expires sooner than
	// this is re-issued (default 30 days).
	RenewBefore time.Duration
	// Now returns the current time (default time.Now); tests move it.
	Now func() time.Time
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.KeyAlgorithm == "" {
		o.KeyAlgorithm = DefaultKeyAlgorithm
	}
	if o.CAValidity == 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.CertValidity == 0 {
		o.CertValidity = DefaultCertValidity
	}
	if o.RenewBefore == 0 {
		o.RenewBefore = DefaultRenewBefore
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Validate reports whether o, with defaults applied, can be used: a known
// key algorithm, positive lifetimes, and a renewal window shorter than a
// leaf's lifetime (otherwise every run would re-issue every leaf).
func (o Options) Validate() error {
	_, err := o.resolve()
	return err
}

// resolve applies the defaults and validates the result.
func (o Options) resolve() (Options, error) {
	o = o.withDefaults()
	switch o.KeyAlgorithm {
	case KeyECDSAP256, KeyRSA2048, KeyRSA3072:
	default:
		return o, fmt.Errorf("pki: unknown key algorithm %q (want %s, %s or %s)",
			o.KeyAlgorithm, KeyECDSAP256, KeyRSA2048, KeyRSA3072)
	}
	if o.CAValidity < 0 || o.CertValidity < 0 || o.RenewBefore < 0 {
		return o, fmt.Errorf("pki: validity and renewal durations must be positive")
	}
	if o.RenewBefore >= o.CertValidity {
		return o, fmt.Errorf("pki: renew_before (%v) must be shorter than cert_validity (%v)",
			o.RenewBefore, o.CertValidity)
	}
	if o.CertValidity > o.CAValidity {
		return o, fmt.Errorf("pki: cert_validity (%v) must not exceed ca_validity (%v)",
			o.CertValidity, o.CAValidity)
	}
	return o, nil
}
