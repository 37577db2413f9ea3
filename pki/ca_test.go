package pki

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// TestCANeverOverwritten breaks a CA in each way an operator or a crash
// could, and checks that Ensure fails with an explanation and leaves every
// file exactly as it was.
func TestCANeverOverwritten(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ca      CAName
		edit    func(t *testing.T, root *hostfs.Root, c *clock)
		problem string
	}{
		{"key does not match", EtcdCA, func(t *testing.T, root *hostfs.Root, _ *clock) {
			writeFile(t, root, KeyPath("etcd/ca"), readFile(t, root, KeyPath("ca")), 0o600)
		}, "/etc/kubernetes/pki/etcd/ca.key does not belong to /etc/kubernetes/pki/etcd/ca.crt"},
		{"certificate without key", CA, func(t *testing.T, root *hostfs.Root, _ *clock) {
			mustRemove(t, root, KeyPath("ca"))
		}, "/etc/kubernetes/pki/ca.crt exists but /etc/kubernetes/pki/ca.key does not"},
		{"key without certificate", FrontProxyCA, func(t *testing.T, root *hostfs.Root, _ *clock) {
			mustRemove(t, root, CertPath("front-proxy-ca"))
		}, "/etc/kubernetes/pki/front-proxy-ca.key exists but /etc/kubernetes/pki/front-proxy-ca.crt does not"},
		{"garbage certificate", CA, func(t *testing.T, root *hostfs.Root, _ *clock) {
			writeFile(t, root, CertPath("ca"), []byte("garbage\n"), 0o644)
		}, "ca.crt is not a readable certificate: no PEM CERTIFICATE block"},
		{"empty certificate", CA, func(t *testing.T, root *hostfs.Root, _ *clock) {
			writeFile(t, root, CertPath("ca"), nil, 0o644)
		}, "ca.crt is not a readable certificate"},
		{"garbage key", CA, func(t *testing.T, root *hostfs.Root, _ *clock) {
			writeFile(t, root, KeyPath("ca"), []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), 0o600)
		}, "ca.key is not a readable private key"},
		{"not a CA", CA, func(t *testing.T, root *hostfs.Root, _ *clock) {
			writeFile(t, root, CertPath("ca"), readFile(t, root, CertPath("apiserver")), 0o644)
			writeFile(t, root, KeyPath("ca"), readFile(t, root, KeyPath("apiserver")), 0o600)
		}, `is not a CA certificate`},
		{"expired", EtcdCA, func(t *testing.T, _ *hostfs.Root, c *clock) {
			c.now = epoch().Add(DefaultCAValidity + time.Minute)
		}, "etcd/ca.crt expired at 2036-02-27T12:00:00Z"},
		{"not yet valid", CA, func(t *testing.T, _ *hostfs.Root, c *clock) {
			c.now = epoch().Add(-time.Hour)
		}, "is not valid before"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, root, c := setUp(t, KeyECDSAP256)
			tc.edit(t, root, c)
			before := snapshot(t, root)
			time.Sleep(5 * time.Millisecond)

			_, _, err := s.EnsureCA(tc.ca)
			checkCAError(t, err, tc.ca, tc.problem)
			_, err = EnsureControlPlane(s, testNode())
			if err == nil || tc.ca == CA && !strings.HasPrefix(err.Error(), "ca: ") {
				t.Errorf("EnsureControlPlane: %v", err)
			}
			_, err = s.LoadAuthority(tc.ca)
			if err == nil {
				t.Error("LoadAuthority accepted the broken CA")
			}
			sameFiles(t, before, snapshot(t, root))
		})
	}
}

func checkCAError(t *testing.T, err error, ca CAName, problem string) {
	t.Helper()
	var caErr *CAError
	if !errors.As(err, &caErr) {
		t.Fatalf("error %v (%T), want *CAError", err, err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, string(ca)+": ") {
		t.Errorf("error %q does not start with the CA name", msg)
	}
	if !strings.Contains(caErr.Problem, problem) {
		t.Errorf("problem %q does not contain %q", caErr.Problem, problem)
	}
	if caErr.Remedy == "" || !strings.Contains(msg, "refusing to replace it") {
		t.Errorf("error %q says nothing about what to do", msg)
	}
}

func mustRemove(t *testing.T, root *hostfs.Root, logical string) {
	t.Helper()
	if _, err := root.Remove(logical); err != nil {
		t.Fatal(err)
	}
}

func TestLoadCACertNeedsNoKey(t *testing.T) {
	s, root, _ := setUp(t, KeyECDSAP256)
	for _, n := range CANames() {
		mustRemove(t, root, KeyPath(string(n)))
		cert, err := s.LoadCACert(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if !cert.IsCA {
			t.Errorf("%s: not a CA", n)
		}
		if _, err := s.LoadAuthority(n); err == nil {
			t.Errorf("%s: LoadAuthority without a key", n)
		}
	}
	writeFile(t, root, CertPath("ca"), readFile(t, root, CertPath("apiserver")), 0o644)
	if _, err := s.LoadCACert(CA); err == nil {
		t.Error("LoadCACert accepted a leaf")
	}
}

func TestCAReusedAcrossStores(t *testing.T) {
	s, root, _ := setUp(t, KeyECDSAP256)
	a1, err := s.LoadAuthority(EtcdCA)
	if err != nil {
		t.Fatal(err)
	}
	// Another store over the same files, with another key algorithm.
	a2, out, err := NewStore(root, Options{KeyAlgorithm: KeyRSA2048}).EnsureCA(EtcdCA)
	if err != nil || out.Action != Reused {
		t.Fatalf("%v %v", out, err)
	}
	if !a1.Cert().Equal(a2.Cert()) || a2.Name() != EtcdCA {
		t.Error("a different CA was loaded")
	}
	if CAHash(a1.Cert()) != CAHash(a2.Cert()) || !strings.HasPrefix(CAHash(a1.Cert()), "sha256:") ||
		len(CAHash(a1.Cert())) != len("sha256:")+64 {
		t.Errorf("CAHash %q", CAHash(a1.Cert()))
	}
}
