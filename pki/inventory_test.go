package pki

import (
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestInventory(t *testing.T) {
	s, root, c := setUp(t, KeyECDSAP256)
	wantSigner := map[string]string{"ca": "ca", "etcd/ca": "etcd/ca", "front-proxy-ca": "front-proxy-ca"}
	for _, spec := range ControlPlaneCerts(testNode()) {
		wantSigner[spec.Name] = string(spec.CA)
	}

	for _, tc := range []struct {
		name      string
		now       time.Time
		residual  time.Duration // of the leaves
		willRenew bool
		expired   bool
	}{
		{"fresh", epoch(), DefaultCertValidity, false, false},
		{"outside window", epoch().Add(DefaultCertValidity - 31*24*time.Hour), 31 * 24 * time.Hour, false, false},
		{"inside window", epoch().Add(DefaultCertValidity - 10*24*time.Hour), 10 * 24 * time.Hour, true, false},
		{"expired", epoch().Add(DefaultCertValidity + time.Hour), -time.Hour, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.now = tc.now
			inv, err := s.Inventory()
			if err != nil {
				t.Fatal(err)
			}
			if len(inv) != len(wantSigner) {
				t.Fatalf("%d entries, want %d: %+v", len(inv), len(wantSigner), inv)
			}
			for i, st := range inv {
				if i > 0 && inv[i-1].Name >= st.Name {
					t.Errorf("not sorted: %s before %s", inv[i-1].Name, st.Name)
				}
				if st.SignedBy != wantSigner[st.Name] {
					t.Errorf("%s: signed by %q, want %q", st.Name, st.SignedBy, wantSigner[st.Name])
				}
				if st.Path != CertPath(st.Name) || st.Error != "" {
					t.Errorf("%s: path %q error %q", st.Name, st.Path, st.Error)
				}
				isCA := strings.HasSuffix(st.Name, "ca")
				if st.CA != isCA {
					t.Errorf("%s: CA = %v", st.Name, st.CA)
				}
				if isCA {
					if st.WillRenew || st.Residual != DefaultCAValidity-(tc.now.Sub(epoch())) {
						t.Errorf("%s: will renew %v, residual %v", st.Name, st.WillRenew, st.Residual)
					}
					continue
				}
				if st.Residual != tc.residual || st.WillRenew != tc.willRenew || st.Expired != tc.expired {
					t.Errorf("%s: residual %v will renew %v expired %v", st.Name, st.Residual, st.WillRenew, st.Expired)
				}
				if !st.NotAfter.Equal(epoch().Add(DefaultCertValidity)) {
					t.Errorf("%s: not after %v", st.Name, st.NotAfter)
				}
			}
		})
	}

	// Foreign and broken files are listed, not fatal.
	writeFile(t, root, CertPath("broken"), []byte("garbage"), 0o644)
	other, _, err := generateCA(CA, Options{Now: c.Now}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, CertPath("foreign"), other.CertPEM(), 0o644)
	inv, err := s.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	byName := make(map[string]CertStatus)
	for _, st := range inv {
		byName[st.Name] = st
	}
	if byName["broken"].Error == "" || byName["foreign"].SignedBy != "" || !byName["foreign"].CA {
		t.Errorf("broken %+v foreign %+v", byName["broken"], byName["foreign"])
	}

	data, err := json.Marshal(byName["apiserver"])
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"name":`, `"path":`, `"subject":`, `"issuer":`, `"not_after":`, `"residual":`,
		`"ca":`, `"signed_by":`, `"will_renew":`, `"expired":`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("JSON %s lacks %s", data, key)
		}
	}
}

func TestInventoryOfEmptyHost(t *testing.T) {
	s, _, _ := newTestStore(t, KeyECDSAP256)
	inv, err := s.Inventory()
	if err != nil || len(inv) != 0 {
		t.Errorf("%v %v", inv, err)
	}
}

func TestInspectEmbeddedCert(t *testing.T) {
	s, root, c := setUp(t, KeyECDSAP256)
	a, err := s.LoadAuthority(CA)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := a.Issue(KubeconfigCerts(testNode())[0], Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	cas := map[CAName]*x509.Certificate{CA: loadCert(t, root, "ca"), EtcdCA: loadCert(t, root, "etcd/ca")}
	st := Inspect("admin", "/etc/kubernetes/admin.conf", kp.CertPEM, cas, Options{Now: c.Now})
	if st.SignedBy != "ca" || st.Subject != "CN=kubernetes-admin,O=kubeadm:cluster-admins" || st.CA || st.WillRenew {
		t.Errorf("%+v", st)
	}
}
