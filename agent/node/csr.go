package node

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// approveServingCSRs approves the kubelets' serving-certificate requests
// (signer kubernetes.io/kubelet-serving, which the API server never
// approves by itself and a kubelet may not approve for itself) once each
// checks out against what the cluster knows of the node: the requester is
// the node's own identity, the certificate asks for that identity, only
// the node's name and the addresses of its Node and of its gossip member,
// and server usages only. Anything else stays pending, with the reason
// logged once, for an operator. It returns how many it approved.
func (n *Node) approveServingCSRs(ctx context.Context, cs kubernetes.Interface, nodes []corev1.Node) (int, error) {
	list, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("list certificate signing requests: %w", err)
	}
	gossipAddr := map[string]netip.Addr{}
	for _, m := range n.d.Members() {
		gossipAddr[m.Name] = m.Addr.Addr().Unmap()
	}
	approved := 0
	var errs []error
	for i := range list.Items {
		csr := &list.Items[i]
		if csr.Spec.SignerName != certv1.KubeletServingSignerName || len(csr.Status.Conditions) > 0 {
			continue
		}
		if err := checkServingCSR(csr, nodes, gossipAddr, n.servingPolicy()); err != nil {
			n.mu.Lock()
			if n.refusedCSR == nil {
				n.refusedCSR = map[string]bool{}
			}
			if !n.refusedCSR[csr.Name] {
				n.refusedCSR[csr.Name] = true
				n.d.Log.Warn("left a kubelet serving-certificate request pending", "csr", csr.Name, "user", csr.Spec.Username, "reason", err)
			}
			n.mu.Unlock()
			continue
		}
		csr.Status.Conditions = append(csr.Status.Conditions, certv1.CertificateSigningRequestCondition{
			Type: certv1.CertificateApproved, Status: corev1.ConditionTrue,
			Reason:  "EcomAgentApproved",
			Message: "ecom-agent checked the node's identity, names and addresses",
		})
		if _, err := cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
			// Another control-plane agent may have approved it first.
			errs = append(errs, fmt.Errorf("approve %s: %w", csr.Name, err))
			continue
		}
		approved++
		n.d.Log.Info("approved a kubelet serving certificate", "csr", csr.Name, "node", strings.TrimPrefix(csr.Spec.Username, "system:node:"))
	}
	return approved, errors.Join(errs...)
}

// checkServingCSR says why a kubelet-serving request must not be
// approved, or nil.
func checkServingCSR(csr *certv1.CertificateSigningRequest, nodes []corev1.Node, gossipAddr map[string]netip.Addr, p servingPolicy) error {
	name, ok := strings.CutPrefix(csr.Spec.Username, "system:node:")
	if !ok || name == "" || !slices.Contains(csr.Spec.Groups, "system:nodes") {
		return fmt.Errorf("requested by %q, not by a node's own identity", csr.Spec.Username)
	}
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return errors.New("the request is not a PEM certificate request")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return err
	}
	if err := req.CheckSignature(); err != nil {
		return err
	}
	if req.Subject.CommonName != csr.Spec.Username || !slices.Equal(req.Subject.Organization, []string{"system:nodes"}) {
		return fmt.Errorf("asks for %s, not for %s in system:nodes", req.Subject, csr.Spec.Username)
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return errors.New("asks for e-mail or URI names")
	}
	for _, u := range csr.Spec.Usages {
		if u != certv1.UsageDigitalSignature && u != certv1.UsageKeyEncipherment && u != certv1.UsageServerAuth {
			return fmt.Errorf("asks for usage %q", u)
		}
	}
	var node *corev1.Node
	for i := range nodes {
		if nodes[i].Name == name {
			node = &nodes[i]
		}
	}
	if node == nil {
		return fmt.Errorf("no Node %s", name)
	}
	nodeIPs := map[netip.Addr]bool{}
	allowedDNS := map[string]bool{name: true}
	for _, a := range node.Status.Addresses {
		switch a.Type {
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			allowedDNS[a.Address] = true
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				nodeIPs[ip.Unmap()] = true
			}
		}
	}
	// The Node's addresses are the kubelet's own claims. The only
	// address approved is the one the node gossips from (which the
	// agent saw, encrypted with the cluster's key), and only when the
	// Node says it too.
	g, ok := gossipAddr[name]
	if !ok || !nodeIPs[g] {
		return fmt.Errorf("node %s is not in the gossip view at one of its Node's addresses", name)
	}
	for _, d := range req.DNSNames {
		if why := p.forbiddenName(d); why != "" {
			return fmt.Errorf("asks for DNS name %q, %s", d, why)
		}
		if !allowedDNS[d] {
			return fmt.Errorf("asks for DNS name %q, which is not the node's", d)
		}
	}
	for _, ip := range req.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		a = a.Unmap()
		switch {
		case !ok:
			return fmt.Errorf("asks for address %s, which is not an address", ip)
		case a.IsLoopback() || a.IsUnspecified():
			return fmt.Errorf("asks for address %s, a loopback address: every node has it", ip)
		case p.serviceCIDR.IsValid() && p.serviceCIDR.Contains(a):
			return fmt.Errorf("asks for address %s, a cluster service address (%s)", ip, p.serviceCIDR)
		case a != g:
			return fmt.Errorf("asks for address %s, which is not the node's (it gossips from %s)", ip, g)
		}
	}
	return nil
}

// servingPolicy is what no kubelet serving certificate may name: the
// cluster's service addresses and names, whose certificates clients
// trust for the API server and the cluster's Services.
type servingPolicy struct {
	serviceCIDR   netip.Prefix
	clusterDomain string
}

func (n *Node) servingPolicy() servingPolicy {
	return servingPolicy{serviceCIDR: n.d.Config.Network.ServiceCIDR, clusterDomain: n.d.Config.Network.ClusterDomain}
}

// forbiddenName says why name may never be in a kubelet's serving
// certificate, or "".
func (p servingPolicy) forbiddenName(name string) string {
	lower := strings.ToLower(strings.TrimSuffix(name, "."))
	switch {
	case lower == "localhost" || strings.HasSuffix(lower, ".localhost"):
		return "a loopback name: every node has it"
	case lower == "kubernetes" || strings.HasPrefix(lower, "kubernetes."):
		return "the API server's service name"
	case strings.HasSuffix(lower, ".svc") || strings.Contains(lower, ".svc.") ||
		(p.clusterDomain != "" && (lower == p.clusterDomain || strings.HasSuffix(lower, "."+p.clusterDomain))):
		return "a cluster service name"
	}
	return ""
}
