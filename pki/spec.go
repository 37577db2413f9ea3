package pki

import (
	"crypto/x509"
	"fmt"
	"net/netip"
	"path"
	"strings"
)

// CAName names one of the cluster's certificate authorities; it is also
// the CA's path under the PKI directory without the extension.
type CAName string

// The cluster's certificate authorities.
const (
	// CA signs the API server's certificates and every client certificate
	// of the cluster (kubeconfigs, kubelets).
	CA CAName = "ca"
	// EtcdCA signs etcd's server, peer and client certificates.
	EtcdCA CAName = "etcd/ca"
	// FrontProxyCA signs the API server's aggregation-layer client.
	FrontProxyCA CAName = "front-proxy-ca"
)

// CANames lists the CAs in the order a control-plane node creates them.
func CANames() []CAName { return []CAName{CA, EtcdCA, FrontProxyCA} }

// commonName is the subject CN of a new CA certificate, as kubeadm names them.
func (n CAName) commonName() string {
	switch n {
	case CA:
		return "kubernetes"
	case EtcdCA:
		return "etcd-ca"
	case FrontProxyCA:
		return "front-proxy-ca"
	}
	return string(n)
}

func (n CAName) valid() bool {
	return n == CA || n == EtcdCA || n == FrontProxyCA
}

// Node is what a node's certificates are issued for.
type Node struct {
	// Name is the node name: the CN of node certificates and a DNS SAN.
	Name string
	// AdvertiseIP is the address other nodes reach this one on.
	AdvertiseIP netip.Addr
	// ServiceIP is the first IP of the service CIDR (the "kubernetes"
	// service's ClusterIP).
	ServiceIP netip.Addr
	// ClusterDomain is the cluster's DNS domain (default cluster.local).
	ClusterDomain string
	// ExtraSANs are added to the API server's certificate; each is an IP
	// address if it parses as one and a DNS name otherwise.
	ExtraSANs []string
}

// Validate reports whether n has what the certificate specs need.
func (n Node) Validate() error {
	if n.Name == "" {
		return fmt.Errorf("node: name is empty")
	}
	if !n.AdvertiseIP.IsValid() {
		return fmt.Errorf("node %s: advertise address is not set", n.Name)
	}
	if !n.ServiceIP.IsValid() {
		return fmt.Errorf("node %s: service IP is not set", n.Name)
	}
	for _, s := range n.ExtraSANs {
		if s == "" || strings.ContainsAny(s, " \t/,") {
			return fmt.Errorf("node %s: extra SAN %q is neither an IP address nor a DNS name", n.Name, s)
		}
	}
	return nil
}

// CertSpec says what a leaf certificate must contain. It is the whole
// truth about a leaf: an existing certificate that differs from its spec
// is re-issued.
type CertSpec struct {
	// Name identifies the certificate in logs and is its path under the
	// PKI directory without the extension ("apiserver", "etcd/server"),
	// or the kubeconfig it is embedded in ("admin").
	Name string
	// CA is the authority that signs it.
	CA           CAName
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []netip.Addr
	// Usages are the extended key usages; the certificate verifies for
	// these and no others.
	Usages []x509.ExtKeyUsage
}

func (s CertSpec) validate() error {
	if s.Name == "" || path.IsAbs(s.Name) || path.Clean(s.Name) != s.Name || strings.HasPrefix(s.Name, "..") {
		return fmt.Errorf("certificate spec: invalid name %q", s.Name)
	}
	if !s.CA.valid() {
		return fmt.Errorf("%s: unknown CA %q", s.Name, s.CA)
	}
	if s.CommonName == "" {
		return fmt.Errorf("%s: empty common name", s.Name)
	}
	if len(s.Usages) == 0 {
		return fmt.Errorf("%s: no extended key usage", s.Name)
	}
	for _, ip := range s.IPs {
		if !ip.IsValid() || ip.Zone() != "" {
			return fmt.Errorf("%s: invalid IP SAN %q", s.Name, ip)
		}
	}
	return nil
}

// serverAuth and clientAuth return fresh slices, so that no two specs
// share backing arrays a caller could modify.
func serverAuth() []x509.ExtKeyUsage { return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }
func clientAuth() []x509.ExtKeyUsage { return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} }

// ControlPlaneCerts returns the leaf certificates a control-plane node
// keeps as files under the PKI directory, in the order they are issued.
func ControlPlaneCerts(n Node) []CertSpec {
	domain := n.ClusterDomain
	if domain == "" {
		domain = "cluster.local"
	}
	apiDNS := []string{n.Name, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc." + domain, "localhost"}
	apiIPs := []netip.Addr{n.ServiceIP, n.AdvertiseIP, netip.MustParseAddr("127.0.0.1")}
	for _, s := range n.ExtraSANs {
		if ip, err := netip.ParseAddr(s); err == nil {
			apiIPs = append(apiIPs, ip.Unmap())
		} else {
			apiDNS = append(apiDNS, s)
		}
	}
	etcdDNS := []string{n.Name, "localhost"}
	etcdIPs := []netip.Addr{n.AdvertiseIP, netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	serverClient := func() []x509.ExtKeyUsage {
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}

	return []CertSpec{
		{Name: "apiserver", CA: CA, CommonName: "kube-apiserver",
			DNSNames: dedupDNS(apiDNS), IPs: dedupIPs(apiIPs), Usages: serverAuth()},
		{Name: "apiserver-kubelet-client", CA: CA, CommonName: "kube-apiserver-kubelet-client",
			Organization: []string{"system:masters"}, Usages: clientAuth()},
		{Name: "front-proxy-client", CA: FrontProxyCA, CommonName: "front-proxy-client",
			Usages: clientAuth()},
		{Name: "apiserver-etcd-client", CA: EtcdCA, CommonName: "kube-apiserver-etcd-client",
			Usages: clientAuth()},
		{Name: "etcd/server", CA: EtcdCA, CommonName: n.Name,
			DNSNames: dedupDNS(etcdDNS), IPs: dedupIPs(etcdIPs), Usages: serverClient()},
		{Name: "etcd/peer", CA: EtcdCA, CommonName: n.Name,
			DNSNames: dedupDNS(etcdDNS), IPs: dedupIPs(etcdIPs), Usages: serverClient()},
		{Name: "etcd/healthcheck-client", CA: EtcdCA, CommonName: "kube-etcd-healthcheck-client",
			Usages: clientAuth()},
	}
}

// The agent's Kubernetes identity: user AgentUserPrefix+node name in
// group AgentGroup.
const (
	AgentUserPrefix = "system:ecom-agent:"
	AgentGroup      = "ecom-agent:agents"
)

// KubeconfigCerts returns the client certificates that are embedded in
// kubeconfigs rather than kept as files; each is named after its
// kubeconfig ("admin" for admin.conf, "kubelet" for kubelet.conf).
func KubeconfigCerts(n Node) []CertSpec {
	return []CertSpec{
		{Name: "admin", CA: CA, CommonName: "kubernetes-admin",
			Organization: []string{"kubeadm:cluster-admins"}, Usages: clientAuth()},
		{Name: "super-admin", CA: CA, CommonName: "kubernetes-super-admin",
			Organization: []string{"system:masters"}, Usages: clientAuth()},
		{Name: "controller-manager", CA: CA, CommonName: "system:kube-controller-manager",
			Usages: clientAuth()},
		{Name: "scheduler", CA: CA, CommonName: "system:kube-scheduler",
			Usages: clientAuth()},
		// The agent's own identity towards the API: bootstrap RBAC
		// binds its group, so its rights are visible in the cluster
		// rather than borrowed from system:masters.
		{Name: "ecom-agent", CA: CA, CommonName: AgentUserPrefix + n.Name,
			Organization: []string{AgentGroup}, Usages: clientAuth()},
		// Kubernetes' default policy binds system:node-proxier to this
		// user.
		KubeProxyClientCert(),
		KubeletClientCert(n),
	}
}

// KubeProxyClientCert returns kube-proxy's client certificate: Kubernetes'
// default policy binds system:node-proxier to this user.
func KubeProxyClientCert() CertSpec {
	return CertSpec{Name: "kube-proxy", CA: CA, CommonName: "system:kube-proxy", Usages: clientAuth()}
}

// KubeletClientCert returns the kubelet's client certificate, the one
// KubeconfigCerts lists as "kubelet".
func KubeletClientCert(n Node) CertSpec {
	return CertSpec{Name: "kubelet", CA: CA, CommonName: "system:node:" + n.Name,
		Organization: []string{"system:nodes"}, Usages: clientAuth()}
}

// KubeletServingCert returns the kubelet's serving certificate.
func KubeletServingCert(n Node) CertSpec {
	return CertSpec{Name: "kubelet-server", CA: CA, CommonName: "system:node:" + n.Name,
		Organization: []string{"system:nodes"},
		DNSNames:     []string{n.Name}, IPs: dedupIPs([]netip.Addr{n.AdvertiseIP}),
		Usages: serverAuth()}
}

// dedupDNS drops empty and repeated (case-insensitively) names, keeping order.
func dedupDNS(names []string) []string {
	seen := make(map[string]bool, len(names))
	var out []string
	for _, n := range names {
		k := strings.ToLower(n)
		if n == "" || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, n)
	}
	return out
}

// dedupIPs drops invalid and repeated addresses, keeping order.
func dedupIPs(ips []netip.Addr) []netip.Addr {
	seen := make(map[netip.Addr]bool, len(ips))
	var out []netip.Addr
	for _, ip := range ips {
		if !ip.IsValid() {
			continue
		}
		ip = ip.Unmap()
		if seen[ip] {
			continue
		}
		seen[ip] = true
		out = append(out, ip)
	}
	return out
}

// JoinServingCert is the serving certificate of a control-plane agent's
// join endpoint: a worker checks it against the CA its join token pins.
func JoinServingCert(n Node) CertSpec {
	return CertSpec{Name: "ecom-agent-join", CA: CA, CommonName: "ecom-agent-join:" + n.Name,
		DNSNames: []string{n.Name}, IPs: dedupIPs([]netip.Addr{n.AdvertiseIP}), Usages: serverAuth()}
}
