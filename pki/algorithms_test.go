package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// TestKeyAlgorithms builds a whole PKI with each key algorithm, on the
// real clock, and checks every chain with crypto/x509 and with openssl.
func TestKeyAlgorithms(t *testing.T) {
	for _, alg := range []string{KeyECDSAP256, KeyRSA2048, KeyRSA3072} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			if testing.Short() && alg == KeyRSA3072 {
				t.Skip("slow key generation")
			}
			root, err := hostfs.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			opts := Options{KeyAlgorithm: alg}
			s := NewStore(root, opts)
			if _, err := EnsureControlPlane(s, testNode()); err != nil {
				t.Fatal(err)
			}
			cas := make(map[CAName]*x509.Certificate)
			for _, n := range CANames() {
				cas[n] = loadCert(t, root, string(n))
				if got := keyAlgorithm(cas[n].PublicKey); got != alg {
					t.Errorf("%s: key %s", n, got)
				}
			}
			if key, err := parseKeyPEM(readFile(t, root, ServiceAccountKey)); err != nil || keyAlgorithm(key.Public()) != alg {
				t.Errorf("sa.key: %v", err)
			}
			a, err := s.LoadAuthority(CA)
			if err != nil {
				t.Fatal(err)
			}
			wants := make(map[string]want)
			for _, w := range expectations() {
				wants[w.name] = w
			}
			for _, spec := range allSpecs(testNode()) {
				var cert *x509.Certificate
				if exists, _ := root.Exists(CertPath(spec.Name)); exists {
					cert = loadCert(t, root, spec.Name)
				} else {
					kp, err := a.Issue(spec, opts)
					if err != nil {
						t.Fatal(err)
					}
					cert = kp.Cert
				}
				if got := keyAlgorithm(cert.PublicKey); got != alg {
					t.Errorf("%s: key %s", spec.Name, got)
				}
				wantKU := x509.KeyUsageDigitalSignature
				if strings.HasPrefix(alg, "rsa") {
					wantKU |= x509.KeyUsageKeyEncipherment
				}
				if cert.KeyUsage != wantKU {
					t.Errorf("%s: key usage %#x, want %#x", spec.Name, cert.KeyUsage, wantKU)
				}
				verifyLeaf(t, cert, cas, wants[spec.Name], time.Now())
			}
			opensslVerify(t, root)
		})
	}
}

// opensslVerify runs `openssl verify` on every file leaf for each purpose
// it has, and checks that a client-only leaf is refused as a server.
func opensslVerify(t *testing.T, root *hostfs.Root) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not found")
	}
	run := func(spec CertSpec, purpose string) error {
		out, err := exec.Command("openssl", "verify", "-x509_strict",
			"-CAfile", root.Path(CertPath(string(spec.CA))),
			"-purpose", purpose, root.Path(CertPath(spec.Name))).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	for _, spec := range ControlPlaneCerts(testNode()) {
		for _, u := range spec.Usages {
			purpose := map[x509.ExtKeyUsage]string{x509.ExtKeyUsageServerAuth: "sslserver",
				x509.ExtKeyUsageClientAuth: "sslclient"}[u]
			if err := run(spec, purpose); err != nil {
				t.Errorf("%s as %s: %v", spec.Name, purpose, err)
			}
		}
		if !slices.Contains(spec.Usages, x509.ExtKeyUsageServerAuth) && run(spec, "sslserver") == nil {
			t.Errorf("openssl accepts client certificate %s as a server", spec.Name)
		}
	}
}

func TestCAHashMatchesOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not found")
	}
	_, root, _ := setUp(t, KeyECDSAP256)
	// kubeadm's documented recipe: hash the DER public key of ca.crt.
	pub, err := exec.Command("openssl", "x509", "-pubkey", "-noout", "-in", root.Path(CertPath("ca"))).Output()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("openssl", "pkey", "-pubin", "-outform", "der")
	cmd.Stdin = strings.NewReader(string(pub))
	der, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	if got, want := CAHash(loadCert(t, root, "ca")), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		t.Errorf("CAHash %s, openssl %s", got, want)
	}
}
