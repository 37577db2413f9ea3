// Package workercreds is how a worker gets its credentials without a CA
// key: on a control-plane node, the Signer that signs a worker's kubelet
// and kube-proxy certificate requests over the agents' RPC; on a worker,
// the component that asks for them, renews them, and runs the API load
// balancer its kubelet and kube-proxy talk through.
package workercreds

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/peer"
	"github.com/ecom-platform/ecom-agent/pki"
)

// MethodNodeCerts is the RPC a worker's agent calls on a control-plane
// agent to have its kubelet's and kube-proxy's client certificates
// signed. The worker generates the keys and sends certificate signing
// requests: no private key, and no CA key, ever travels to a worker.
const MethodNodeCerts = "node-certs"

// clockSkewWarning is the clock difference to a control-plane node a
// worker warns about (the RPC refuses twice as much).
const clockSkewWarning = time.Minute

// nodeCertsRequest carries a worker's certificate signing requests (PEM).
type nodeCertsRequest struct {
	KubeletCSR []byte `json:"kubelet_csr"`
	ProxyCSR   []byte `json:"proxy_csr"`
	// CurrentCert and Proof prove the worker holds its current kubelet
	// credentials (see proof.go); required once its Node is registered.
	CurrentCert []byte `json:"current_cert,omitempty"`
	Proof       []byte `json:"proof,omitempty"`
}

// NodeLookup reports whether a Node of that name is registered in the
// cluster's API.
type NodeLookup func(ctx context.Context, name string) (bool, error)

// nodeCertsResponse is what a control-plane agent gives a worker: the
// cluster CA's certificate (never its key) and the signed certificates.
type nodeCertsResponse struct {
	CACert      []byte `json:"ca_cert"`
	KubeletCert []byte `json:"kubelet_cert"`
	ProxyCert   []byte `json:"proxy_cert"`
	// Now is the signer's clock, for the worker's skew check.
	Now time.Time `json:"now"`
}

// Signer signs workers' certificate requests on a control-plane node.
type Signer struct {
	Config  *config.Config
	Root    *hostfs.Root
	Log     *slog.Logger
	Now     func() time.Time
	Members func() []gossip.Member
	// Registered tells whether a worker's Node exists: from then on
	// only the holder of its current kubelet credentials gets new ones.
	Registered NodeLookup
}

// Handle signs a worker's kubelet (system:node:NAME in
// system:nodes) and kube-proxy (system:kube-proxy) client certificates.
// The sender proved it holds the cluster secret (the RPC is sealed with
// it); on top of that, the name it claims must be a worker in the gossip
// view at the address the request came from, and once its Node is
// registered, it must prove it holds the kubelet key the CA certified
// for that name; so one worker cannot get another node's identity by
// naming it, even by gossiping under its name while it is down.
func (sg *Signer) Handle(ctx context.Context, r peer.Request) (any, error) {
	var req nodeCertsRequest
	if err := r.Decode(&req); err != nil {
		return nil, err
	}
	from, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return nil, peer.Errorf(peer.CodeBadRequest, "remote address %q: %v", r.RemoteAddr, err)
	}
	if err := checkWorkerCaller(sg.Members(), r.NodeName, from.Addr()); err != nil {
		return nil, err
	}
	store := pki.NewStore(sg.Root, bootstrap.PKIOptions(sg.Config))
	ca, err := store.LoadAuthority(pki.CA)
	if err != nil {
		return nil, peer.Errorf(peer.CodeUnavailable, "this control-plane node cannot sign yet: %v", err)
	}
	registered, err := sg.Registered(ctx, r.NodeName)
	if err != nil {
		return nil, peer.Errorf(peer.CodeUnavailable, "cannot tell whether node %q is registered yet: %v", r.NodeName, err)
	}
	if registered {
		if err := verifyProof(ca.Cert(), r.NodeName, req, sg.Now()); err != nil {
			sg.Log.Warn("refused a worker's certificate request", "worker", r.NodeName, "from", from.Addr(), "reason", err)
			return nil, peer.Errorf(peer.CodeRefused, "node %q is registered, and only the holder of its current kubelet credentials gets new ones: %v; "+
				"if this host was reinstalled, remove the old Node first: kubectl delete node %s", r.NodeName, err, r.NodeName)
		}
	}
	opts := bootstrap.PKIOptions(sg.Config)
	kubelet, err := ca.SignRequest(pki.KubeletClientCert(pki.Node{Name: r.NodeName}), req.KubeletCSR, opts)
	if err != nil {
		return nil, peer.Errorf(peer.CodeBadRequest, "kubelet certificate: %v", err)
	}
	proxy, err := ca.SignRequest(pki.KubeProxyClientCert(), req.ProxyCSR, opts)
	if err != nil {
		return nil, peer.Errorf(peer.CodeBadRequest, "kube-proxy certificate: %v", err)
	}
	sg.Log.Info("signed a worker's kubelet and kube-proxy certificates", "worker", r.NodeName, "from", from.Addr())
	return nodeCertsResponse{CACert: ca.CertPEM(), KubeletCert: kubelet, ProxyCert: proxy, Now: sg.Now()}, nil
}

// checkWorkerCaller refuses a node-certs request unless name is an alive
// worker of the gossip view that gossips from the address the request
// came from.
func checkWorkerCaller(members []gossip.Member, name string, from netip.Addr) error {
	var member *gossip.Member
	for _, m := range members {
		if m.Name == name && m.MetaErr == nil && m.State == gossip.StateAlive {
			member = &m
			break
		}
	}
	switch {
	case member == nil:
		return peer.Errorf(peer.CodeRefused, "node %q is not an alive member of the gossip view", name)
	case member.Meta.Role != config.RoleWorker:
		return peer.Errorf(peer.CodeRefused, "node %q is not a worker: control-plane nodes issue their own certificates", name)
	case member.Addr.Addr().Unmap() != from.Unmap():
		return peer.Errorf(peer.CodeRefused, "node %q gossips from %s but asked from %s", name, member.Addr.Addr(), from)
	}
	return nil
}
