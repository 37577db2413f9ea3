package workercreds

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/ecom-platform/ecom-agent/pki"
)

// A worker whose Node is registered proves, to have its certificates
// signed again, that it holds the kubelet key the cluster CA certified
// for that name: it signs the new requests with its current key. The
// cluster secret and the gossip view alone (which any secret holder can
// claim) then no longer give anyone an existing worker's identity.

// proofMessage is what a worker signs: the purpose and the digests of
// the two new certificate requests, so a proof is good for those only.
func proofMessage(req nodeCertsRequest) []byte {
	k, p := sha256.Sum256(req.KubeletCSR), sha256.Sum256(req.ProxyCSR)
	msg := []byte("ecom-agent node-certs proof v1\x00")
	msg = append(msg, k[:]...)
	return append(msg, p[:]...)
}

// prove fills req's proof with the worker's current kubelet credentials
// (combined PEM: certificate then key).
func prove(req *nodeCertsRequest, current []byte) error {
	kp, err := pki.ParseCombinedPEM(current)
	if err != nil {
		return err
	}
	msg := proofMessage(*req)
	var sig []byte
	switch kp.Key.(type) {
	case ed25519.PrivateKey:
		sig, err = kp.Key.Sign(rand.Reader, msg, crypto.Hash(0))
	default:
		digest := sha256.Sum256(msg)
		sig, err = kp.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
	}
	if err != nil {
		return fmt.Errorf("sign with the current kubelet key: %w", err)
	}
	req.CurrentCert, req.Proof = kp.CertPEM, sig
	return nil
}

// verifyProof checks that req carries a kubelet certificate for name,
// valid now and issued by ca, and a signature over the new requests by
// its key.
func verifyProof(ca *x509.Certificate, name string, req nodeCertsRequest, now time.Time) error {
	if len(req.CurrentCert) == 0 || len(req.Proof) == 0 {
		return errors.New("the request carries no proof of the current kubelet credentials")
	}
	cert, err := pki.ParseCertPEM(req.CurrentCert)
	if err != nil {
		return fmt.Errorf("the current kubelet certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("the current kubelet certificate does not verify against the cluster CA: %w", err)
	}
	if want := "system:node:" + name; cert.Subject.CommonName != want {
		return fmt.Errorf("the current kubelet certificate is %s's, not %s", cert.Subject.CommonName, want)
	}
	var algo x509.SignatureAlgorithm
	switch cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		algo = x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		algo = x509.SHA256WithRSA
	case ed25519.PublicKey:
		algo = x509.PureEd25519
	default:
		return fmt.Errorf("the current kubelet certificate has a %T key", cert.PublicKey)
	}
	if err := cert.CheckSignature(algo, proofMessage(req), req.Proof); err != nil {
		return fmt.Errorf("the proof does not verify with the current kubelet certificate's key: %w", err)
	}
	return nil
}
