package joinserver

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/token"
)

// NodeLookup reports whether a Node of that name is registered in the
// cluster's API.
type NodeLookup func(ctx context.Context, name string) (bool, error)

// Tokens checks a join token against the cluster's list (*token.Store).
type Tokens interface {
	Check(ctx context.Context, t token.Token, usage token.Usage, now time.Time) error
}

// Handler answers workers' requests on a control-plane node.
type Handler struct {
	Config *config.Config
	Root   *hostfs.Root
	Log    *slog.Logger
	Now    func() time.Time
	Tokens Tokens
	// Registered tells whether a worker's Node exists: from then on only
	// the holder of its kubelet credentials gets new ones.
	Registered NodeLookup
	// ControlPlaneNames are the names no worker may take: the etcd
	// members' and the control-plane nodes' of the gossip view.
	ControlPlaneNames func(ctx context.Context) ([]string, error)
}

// refusal is an HTTP status and what the worker is told.
type refusal struct {
	code int
	msg  string
}

func (r *refusal) Error() string { return r.msg }

func refuse(code int, format string, args ...any) error {
	return &refusal{code: code, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP signs a worker's kubelet and kube-proxy certificates and
// hands it the gossip key, once it proved who it is: by its kubelet
// client certificate (a renewal: the certificate names the node), or by a
// join token of the cluster's list for a node name that is not
// registered yet (a first join).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != PathWorker {
		writeError(w, http.StatusNotFound, "POST "+PathWorker+" is the only method here")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRequest)
	var req WorkerRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "the request is not a worker request: "+err.Error())
		return
	}
	resp, how, err := h.handle(r.Context(), r, req)
	if err != nil {
		var rf *refusal
		if !errors.As(err, &rf) {
			rf = &refusal{code: http.StatusServiceUnavailable, msg: err.Error()}
		}
		h.Log.Warn("refused a worker", "worker", req.NodeName, "from", r.RemoteAddr, "reason", rf.msg)
		writeError(w, rf.code, rf.msg)
		return
	}
	h.Log.Info("signed a worker's kubelet and kube-proxy certificates", "worker", req.NodeName, "from", r.RemoteAddr, "by", how)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// handle authenticates the worker and signs; how says by what it was let
// in ("kubelet certificate" or the token's id).
func (h *Handler) handle(ctx context.Context, r *http.Request, req WorkerRequest) (WorkerResponse, string, error) {
	if errs := validation.IsDNS1123Subdomain(req.NodeName); len(errs) > 0 {
		return WorkerResponse{}, "", refuse(http.StatusBadRequest, "node name %q: %s", req.NodeName, strings.Join(errs, "; "))
	}
	now := h.Now()
	var how string
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		// The TLS handshake verified the chain to the cluster CA, for
		// client authentication, valid now.
		leaf := r.TLS.VerifiedChains[0][0]
		if err := checkNodeCert(leaf, req.NodeName); err != nil {
			return WorkerResponse{}, "", err
		}
		// Deleting a worker's Node retires it: its certificate renews
		// nothing any more.
		registered, err := h.Registered(ctx, req.NodeName)
		if err != nil {
			return WorkerResponse{}, "", fmt.Errorf("cannot tell whether node %q is registered: %w", req.NodeName, err)
		}
		if !registered {
			return WorkerResponse{}, "", refuse(http.StatusForbidden, "node %q is not registered (never, or its Node was deleted): "+
				"its kubelet certificate renews nothing; it joins again with a join token", req.NodeName)
		}
		how = "its kubelet certificate"
	} else {
		tok, err := h.bearer(ctx, r, now)
		if err != nil {
			return WorkerResponse{}, "", err
		}
		registered, err := h.Registered(ctx, req.NodeName)
		if err != nil {
			return WorkerResponse{}, "", fmt.Errorf("cannot tell whether node %q is registered yet: %w", req.NodeName, err)
		}
		if registered {
			return WorkerResponse{}, "", refuse(http.StatusForbidden, "node %q is registered, and only the holder of its current kubelet credentials gets new ones; "+
				"if this host was reinstalled, remove the old Node first: kubectl delete node %s", req.NodeName, req.NodeName)
		}
		how = "join token " + tok.ID()
	}
	names, err := h.ControlPlaneNames(ctx)
	if err != nil {
		return WorkerResponse{}, "", fmt.Errorf("cannot read the control-plane nodes' names: %w", err)
	}
	if slices.Contains(names, req.NodeName) {
		return WorkerResponse{}, "", refuse(http.StatusForbidden, "%q is a control-plane node's name; a worker needs a name of its own (node_name in its config)", req.NodeName)
	}
	resp, err := h.sign(req, now)
	return resp, how, err
}

// bearer checks the request's join token.
func (h *Handler) bearer(ctx context.Context, r *http.Request, now time.Time) (token.Token, error) {
	auth := r.Header.Get("Authorization")
	raw, ok := strings.CutPrefix(auth, BearerPrefix)
	if !ok {
		return token.Token{}, refuse(http.StatusUnauthorized, "present a join token (Authorization: Bearer) or this worker's kubelet client certificate")
	}
	tok, err := token.Parse(raw)
	if err != nil {
		return token.Token{}, refuse(http.StatusUnauthorized, "%v", err)
	}
	if err := h.Tokens.Check(ctx, tok, token.UsageWorker, now); err != nil {
		if errors.Is(err, token.ErrUnknown) || errors.Is(err, token.ErrExpired) || errors.Is(err, token.ErrUsage) {
			return token.Token{}, refuse(http.StatusUnauthorized, "%v", err)
		}
		return token.Token{}, fmt.Errorf("cannot check join token %s: %w", tok.ID(), err)
	}
	return tok, nil
}

// checkNodeCert accepts a kubelet client certificate for name.
func checkNodeCert(c *x509.Certificate, name string) error {
	if !slices.Contains(c.Subject.Organization, "system:nodes") || !strings.HasPrefix(c.Subject.CommonName, "system:node:") {
		return refuse(http.StatusForbidden, "the client certificate %q is not a node's kubelet certificate", c.Subject.CommonName)
	}
	if c.Subject.CommonName != "system:node:"+name {
		return refuse(http.StatusForbidden, "the client certificate is %q's, not %q's", strings.TrimPrefix(c.Subject.CommonName, "system:node:"), name)
	}
	return nil
}

// sign signs the worker's requests with the cluster CA.
func (h *Handler) sign(req WorkerRequest, now time.Time) (WorkerResponse, error) {
	opts := bootstrap.PKIOptions(h.Config)
	ca, err := pki.NewStore(h.Root, opts).LoadAuthority(pki.CA)
	if err != nil {
		return WorkerResponse{}, fmt.Errorf("this control-plane node cannot sign yet: %w", err)
	}
	kubelet, err := ca.SignRequest(pki.KubeletClientCert(pki.Node{Name: req.NodeName}), req.KubeletCSR, opts)
	if err != nil {
		return WorkerResponse{}, refuse(http.StatusBadRequest, "kubelet certificate: %v", err)
	}
	proxy, err := ca.SignRequest(pki.KubeProxyClientCert(), req.ProxyCSR, opts)
	if err != nil {
		return WorkerResponse{}, refuse(http.StatusBadRequest, "kube-proxy certificate: %v", err)
	}
	key, err := gossip.DeriveKey(h.Config.Secret())
	if err != nil {
		return WorkerResponse{}, err
	}
	return WorkerResponse{CACert: ca.CertPEM(), KubeletCert: kubelet, ProxyCert: proxy, GossipKey: key, Now: now}, nil
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(ErrorResponse{Error: msg})
}
