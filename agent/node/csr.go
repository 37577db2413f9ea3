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
		if err := checkServingCSR(csr, nodes, gossipAddr); err != nil {
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
func checkServingCSR(csr *certv1.CertificateSigningRequest, nodes []corev1.Node, gossipAddr map[string]netip.Addr) error {
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
	allowedIPs := map[netip.Addr]bool{}
	allowedDNS := map[string]bool{name: true}
	for _, a := range node.Status.Addresses {
		switch a.Type {
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			allowedDNS[a.Address] = true
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				allowedIPs[ip.Unmap()] = true
			}
		}
	}
	// The Node's addresses come from the kubelet itself; the gossip
	// member of that name must be at one of them too.
	if g, ok := gossipAddr[name]; !ok || !allowedIPs[g] {
		return fmt.Errorf("node %s is not in the gossip view at one of its Node's addresses", name)
	}
	for _, d := range req.DNSNames {
		if !allowedDNS[d] {
			return fmt.Errorf("asks for DNS name %q, which is not the node's", d)
		}
	}
	for _, ip := range req.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok || !allowedIPs[a.Unmap()] {
			return fmt.Errorf("asks for address %s, which is not the node's", ip)
		}
	}
	return nil
}
