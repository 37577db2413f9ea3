// Package joinserver is a control-plane agent's join endpoint: HTTPS on
// join.port, with a serving certificate from the cluster CA, where a
// worker gets its kubelet and kube-proxy certificates and the gossip key.
//
// A worker authenticates with its join token the first time (checked
// against the cluster's token list in etcd, as kubeadm checks bootstrap
// tokens) and with its current kubelet client certificate afterwards
// (mutual TLS), as k3s's agents do on its supervisor port. The worker
// sends certificate signing requests: no private key, and never a CA
// key, travels to a worker.
package joinserver

import (
	"time"
)

// PathWorker is the one method of the endpoint: POST a WorkerRequest,
// get a WorkerResponse.
const PathWorker = "/v1/worker/credentials"

// WorkerRequest is what a worker sends.
type WorkerRequest struct {
	// NodeName is the worker's node name; a renewal's must be the one
	// its client certificate names.
	NodeName string `json:"node_name"`
	// KubeletCSR and ProxyCSR are PEM certificate requests for the
	// kubelet (system:node:NAME in system:nodes) and kube-proxy
	// (system:kube-proxy).
	KubeletCSR []byte `json:"kubelet_csr"`
	ProxyCSR   []byte `json:"proxy_csr"`
}

// WorkerResponse is what a worker gets.
type WorkerResponse struct {
	// CACert is the cluster CA's certificate (never its key).
	CACert      []byte `json:"ca_cert"`
	KubeletCert []byte `json:"kubelet_cert"`
	ProxyCert   []byte `json:"proxy_cert"`
	// GossipKey admits the worker to gossip: the key, not the cluster
	// secret it is derived from.
	GossipKey []byte `json:"gossip_key"`
	// Now is the signer's clock, for the worker's skew check.
	Now time.Time `json:"now"`
}

// ErrorResponse is the body of every refusal.
type ErrorResponse struct {
	Error string `json:"error"`
}

// maxRequest bounds a request body: two CSRs are about 1 KiB.
const maxRequest = 64 << 10

// BearerPrefix starts the Authorization header of a token request.
const BearerPrefix = "Bearer "
