package pki

import (
	"crypto/x509"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// want is what one leaf must contain.
type want struct {
	name string
	ca   CAName
	cn   string
	o    []string
	dns  []string
	ips  []string
	eku  []x509.ExtKeyUsage
}

func expectations() []want {
	wantServer := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	wantClient := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	wantBoth := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	etcdDNS := []string{"cp-1", "localhost"}
	etcdIPs := []string{"10.0.0.10", "127.0.0.1", "::1"}
	return []want{
		{"apiserver", CA, "kube-apiserver", nil,
			[]string{"cp-1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
				"kubernetes.default.svc.cluster.local", "localhost", "api.example.com"},
			[]string{"10.96.0.1", "10.0.0.10", "127.0.0.1", "192.0.2.7"}, wantServer},
		{"apiserver-kubelet-client", CA, "kube-apiserver-kubelet-client", []string{"system:masters"}, nil, nil, wantClient},
		{"front-proxy-client", FrontProxyCA, "front-proxy-client", nil, nil, nil, wantClient},
		{"apiserver-etcd-client", EtcdCA, "kube-apiserver-etcd-client", nil, nil, nil, wantClient},
		{"etcd/server", EtcdCA, "cp-1", nil, etcdDNS, etcdIPs, wantBoth},
		{"etcd/peer", EtcdCA, "cp-1", nil, etcdDNS, etcdIPs, wantBoth},
		{"etcd/healthcheck-client", EtcdCA, "kube-etcd-healthcheck-client", nil, nil, nil, wantClient},
		{"admin", CA, "kubernetes-admin", []string{"kubeadm:cluster-admins"}, nil, nil, wantClient},
		{"super-admin", CA, "kubernetes-super-admin", []string{"system:masters"}, nil, nil, wantClient},
		{"controller-manager", CA, "system:kube-controller-manager", nil, nil, nil, wantClient},
		{"scheduler", CA, "system:kube-scheduler", nil, nil, nil, wantClient},
		{"ecom-agent", CA, "system:ecom-agent:cp-1", []string{"ecom-agent:agents"}, nil, nil, wantClient},
		{"kube-proxy", CA, "system:kube-proxy", nil, nil, nil, wantClient},
		{"kubelet", CA, "system:node:cp-1", []string{"system:nodes"}, nil, nil, wantClient},
		{"kubelet-server", CA, "system:node:cp-1", []string{"system:nodes"},
			[]string{"cp-1"}, []string{"10.0.0.10"}, wantServer},
	}
}

func allSpecs(n Node) []CertSpec {
	return append(append(ControlPlaneCerts(n), KubeconfigCerts(n)...), KubeletServingCert(n))
}

func TestSpecsMatchExpectations(t *testing.T) {
	specs := allSpecs(testNode())
	exp := expectations()
	if len(specs) != len(exp) {
		t.Fatalf("%d specs, want %d", len(specs), len(exp))
	}
	for i, s := range specs {
		w := exp[i]
		if s.Name != w.name || s.CA != w.ca || s.CommonName != w.cn {
			t.Errorf("spec %d = %s/%s/%s, want %s/%s/%s", i, s.Name, s.CA, s.CommonName, w.name, w.ca, w.cn)
		}
		if err := s.validate(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
}

// issuedLeaves builds a control-plane PKI and returns every leaf of
// expectations() (files read back from disk, the others issued from the
// cluster CA) with the CA certificates.
func issuedLeaves(t *testing.T, alg string) (map[string]*x509.Certificate, map[CAName]*x509.Certificate, *clock) {
	t.Helper()
	s, root, c := setUp(t, alg)
	cas := make(map[CAName]*x509.Certificate)
	for _, n := range CANames() {
		cas[n] = loadCert(t, root, string(n))
	}
	leaves := make(map[string]*x509.Certificate)
	for _, spec := range ControlPlaneCerts(testNode()) {
		leaves[spec.Name] = loadCert(t, root, spec.Name)
	}
	a, err := s.LoadAuthority(CA)
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range append(KubeconfigCerts(testNode()), KubeletServingCert(testNode())) {
		kp, err := a.Issue(spec, s.opts)
		if err != nil {
			t.Fatal(err)
		}
		leaves[spec.Name] = kp.Cert
	}
	return leaves, cas, c
}

func TestLeafContents(t *testing.T) {
	leaves, cas, c := issuedLeaves(t, KeyECDSAP256)
	for _, w := range expectations() {
		t.Run(w.name, func(t *testing.T) {
			cert := leaves[w.name]
			if cert.Subject.CommonName != w.cn {
				t.Errorf("CN %q, want %q", cert.Subject.CommonName, w.cn)
			}
			if !slices.Equal(cert.Subject.Organization, w.o) {
				t.Errorf("O %q, want %q", cert.Subject.Organization, w.o)
			}
			if !slices.Equal(cert.DNSNames, w.dns) {
				t.Errorf("DNS SANs %q, want %q", cert.DNSNames, w.dns)
			}
			var ips []string
			for _, ip := range cert.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, w.ips) {
				t.Errorf("IP SANs %q, want %q", ips, w.ips)
			}
			if !slices.Equal(cert.ExtKeyUsage, w.eku) {
				t.Errorf("EKU %v, want %v", cert.ExtKeyUsage, w.eku)
			}
			if cert.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("key usage %#x, want digitalSignature only for ECDSA", cert.KeyUsage)
			}
			if cert.IsCA || !cert.BasicConstraintsValid {
				t.Error("leaf must carry basic constraints CA:FALSE")
			}
			ca := cas[w.ca]
			if !slices.Equal(cert.AuthorityKeyId, ca.SubjectKeyId) || len(cert.AuthorityKeyId) == 0 {
				t.Errorf("AKI %x, want CA SKI %x", cert.AuthorityKeyId, ca.SubjectKeyId)
			}
			if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %v is not a positive 128-bit number", cert.SerialNumber)
			}
			if want := epoch().Add(-backdate); !cert.NotBefore.Equal(want) {
				t.Errorf("NotBefore %v, want %v", cert.NotBefore, want)
			}
			if want := epoch().Add(DefaultCertValidity); !cert.NotAfter.Equal(want) {
				t.Errorf("NotAfter %v, want %v", cert.NotAfter, want)
			}
			verifyLeaf(t, cert, cas, w, c.Now())
		})
	}
}

// verifyLeaf checks that cert verifies against its CA for each intended
// EKU, and not for another EKU nor against another CA.
func verifyLeaf(t *testing.T, cert *x509.Certificate, cas map[CAName]*x509.Certificate, w want, now time.Time) {
	t.Helper()
	verify := func(ca *x509.Certificate, usage x509.ExtKeyUsage) error {
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		_, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	for _, u := range w.eku {
		if err := verify(cas[w.ca], u); err != nil {
			t.Errorf("does not verify for %s: %v", extKeyUsageName(u), err)
		}
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageCodeSigning} {
		if slices.Contains(w.eku, u) {
			continue
		}
		if err := verify(cas[w.ca], u); err == nil {
			t.Errorf("verifies for %s, which it must not have", extKeyUsageName(u))
		}
	}
	for name, other := range cas {
		if name != w.ca && verify(other, w.eku[0]) == nil {
			t.Errorf("verifies against %s too", name)
		}
	}
	if len(w.dns) > 0 {
		if err := cert.VerifyHostname(w.dns[0]); err != nil {
			t.Errorf("hostname: %v", err)
		}
	}
	if len(w.ips) > 0 && net.ParseIP(w.ips[0]) != nil {
		if err := cert.VerifyHostname(w.ips[0]); err != nil {
			t.Errorf("IP: %v", err)
		}
	}
}

func TestCAContents(t *testing.T) {
	_, root, _ := setUp(t, KeyECDSAP256)
	cns := map[CAName]string{CA: "kubernetes", EtcdCA: "etcd-ca", FrontProxyCA: "front-proxy-ca"}
	for _, n := range CANames() {
		c := loadCert(t, root, string(n))
		if c.Subject.CommonName != cns[n] {
			t.Errorf("%s: CN %q, want %q", n, c.Subject.CommonName, cns[n])
		}
		if !c.IsCA || !c.BasicConstraintsValid {
			t.Errorf("%s: not a CA", n)
		}
		if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature; c.KeyUsage != want {
			t.Errorf("%s: key usage %#x, want %#x", n, c.KeyUsage, want)
		}
		if len(c.SubjectKeyId) == 0 {
			t.Errorf("%s: no subject key ID", n)
		}
		if err := c.CheckSignatureFrom(c); err != nil {
			t.Errorf("%s: not self-signed: %v", n, err)
		}
		if !c.NotBefore.Equal(epoch().Add(-5*time.Minute)) || !c.NotAfter.Equal(epoch().Add(DefaultCAValidity)) {
			t.Errorf("%s: validity %v – %v", n, c.NotBefore, c.NotAfter)
		}
		if c.SerialNumber.Sign() <= 0 {
			t.Errorf("%s: serial not positive", n)
		}
	}
}

func TestExtraSANsAndDefaults(t *testing.T) {
	n := testNode()
	n.ClusterDomain = ""
	n.ExtraSANs = []string{"2001:db8::1", "CP-1", "10.0.0.10"}
	api := ControlPlaneCerts(n)[0]
	if !slices.Contains(api.DNSNames, "kubernetes.default.svc.cluster.local") {
		t.Errorf("default cluster domain missing: %v", api.DNSNames)
	}
	if slices.Contains(api.DNSNames, "CP-1") {
		t.Errorf("duplicate node name (case-insensitively) kept: %v", api.DNSNames)
	}
	var ips []string
	for _, ip := range api.IPs {
		ips = append(ips, ip.String())
	}
	if got := strings.Join(ips, ","); got != "10.96.0.1,10.0.0.10,127.0.0.1,2001:db8::1" {
		t.Errorf("IPs %s", got)
	}
}

func TestNodeValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Node)
	}{
		{"no name", func(n *Node) { n.Name = "" }},
		{"no advertise IP", func(n *Node) { n.AdvertiseIP = netip.Addr{} }},
		{"no service IP", func(n *Node) { n.ServiceIP = netip.Addr{} }},
		{"bad extra SAN", func(n *Node) { n.ExtraSANs = []string{"a b"} }},
	} {
		n := testNode()
		tc.edit(&n)
		if err := n.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", tc.name, n)
		}
	}
	if err := testNode().Validate(); err != nil {
		t.Error(err)
	}
}
