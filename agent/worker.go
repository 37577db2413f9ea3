package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ecom-platform/ecom-agent/apilb"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/nodecheck"
	"github.com/ecom-platform/ecom-agent/peer"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/token"
)

// methodNodeCerts is the RPC a worker's agent calls on a control-plane
// agent to have its kubelet's and kube-proxy's client certificates
// signed. The worker generates the keys and sends certificate signing
// requests: no private key, and no CA key, ever travels to a worker.
const methodNodeCerts = "node-certs"

// clockSkewWarning is the clock difference to a control-plane node a
// worker warns about (the RPC refuses twice as much).
const clockSkewWarning = time.Minute

// APILoadBalancerPort is where every worker's agent serves the API load
// balancer on 127.0.0.1: the kubelet and kube-proxy of a worker talk to
// https://127.0.0.1:6444, which spreads to the healthy API servers.
const APILoadBalancerPort = 6444

// KubeProxyClientCert is a worker's kube-proxy identity (key and
// certificate in one PEM), referenced by its kubeconfig.
const KubeProxyClientCert = "/var/lib/kube-proxy/client.pem"

// nodeCertsRequest carries a worker's certificate signing requests (PEM).
type nodeCertsRequest struct {
	KubeletCSR []byte `json:"kubelet_csr"`
	ProxyCSR   []byte `json:"proxy_csr"`
}

// nodeCertsResponse is what a control-plane agent gives a worker: the
// cluster CA's certificate (never its key) and the signed certificates.
type nodeCertsResponse struct {
	CACert      []byte `json:"ca_cert"`
	KubeletCert []byte `json:"kubelet_cert"`
	ProxyCert   []byte `json:"proxy_cert"`
	// Now is the signer's clock, for the worker's skew check.
	Now time.Time `json:"now"`
}

// handleNodeCerts signs a worker's kubelet (system:node:NAME in
// system:nodes) and kube-proxy (system:kube-proxy) client certificates.
// The sender proved it holds the cluster secret (the RPC is sealed with
// it); on top of that, the name it claims must be a worker in the gossip
// view at the address the request came from, so one worker cannot get
// another node's identity by naming it.
func (c *cluster) handleNodeCerts(_ context.Context, r peer.Request) (any, error) {
	var req nodeCertsRequest
	if err := r.Decode(&req); err != nil {
		return nil, err
	}
	from, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return nil, peer.Errorf(peer.CodeBadRequest, "remote address %q: %v", r.RemoteAddr, err)
	}
	if err := checkWorkerCaller(c.g.Members(), r.NodeName, from.Addr()); err != nil {
		return nil, err
	}
	store := pki.NewStore(c.d.d.Root, bootstrap.PKIOptions(c.cfg))
	ca, err := store.LoadAuthority(pki.CA)
	if err != nil {
		return nil, peer.Errorf(peer.CodeUnavailable, "this control-plane node cannot sign yet: %v", err)
	}
	opts := bootstrap.PKIOptions(c.cfg)
	kubelet, err := ca.SignRequest(pki.KubeletClientCert(pki.Node{Name: r.NodeName}), req.KubeletCSR, opts)
	if err != nil {
		return nil, peer.Errorf(peer.CodeBadRequest, "kubelet certificate: %v", err)
	}
	proxy, err := ca.SignRequest(pki.KubeProxyClientCert(), req.ProxyCSR, opts)
	if err != nil {
		return nil, peer.Errorf(peer.CodeBadRequest, "kube-proxy certificate: %v", err)
	}
	c.d.d.Log.Info("signed a worker's kubelet and kube-proxy certificates", "worker", r.NodeName, "from", from.Addr())
	return nodeCertsResponse{CACert: ca.CertPEM(), KubeletCert: kubelet, ProxyCert: proxy, Now: c.d.d.Now()}, nil
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

// restartWorkerUnits restarts the kubelet and kube-proxy after their
// credentials were renewed, if they run.
func (d *Daemon) restartWorkerUnits(ctx context.Context) {
	for _, name := range []string{bootstrap.KubeletUnit, bootstrap.KubeProxyUnit} {
		sctx, cancel := context.WithTimeout(ctx, unitJobTimeout)
		st, err := d.sd.Status(sctx, name)
		if err == nil && st.ActiveState == "active" {
			err = d.sd.Restart(sctx, name)
		}
		cancel()
		if err != nil {
			d.d.Log.Warn("restart after renewing its credentials", "unit", name, "err", err)
		}
	}
}

// workerCredentialsValid reports whether the worker has its kubelet and
// kube-proxy credentials, unexpired and outside the renewal window.
func workerCredentialsValid(d *Daemon) bool {
	for _, p := range []string{bootstrap.KubeletClientCert, KubeProxyClientCert} {
		data, err := d.d.Root.ReadFile(p)
		if err != nil {
			return false
		}
		kp, err := pki.ParseCombinedPEM(data)
		if err != nil {
			return false
		}
		window := d.d.Config.PKI.RenewBefore.Duration
		if d.d.Now().Add(window).After(kp.Cert.NotAfter) {
			return false
		}
	}
	ok, _ := d.d.Root.Exists(bootstrap.KubeletKubeconfig)
	return ok
}

// fetchWorkerCredentials asks the control-plane agents in turn, until one
// answers, to sign this worker's kubelet and kube-proxy keys, then writes
// the CA certificate, the two identities and their kubeconfigs.
func (d *Daemon) fetchWorkerCredentials(ctx context.Context) error {
	cfg := d.d.Config
	opts := bootstrap.PKIOptions(cfg)
	kubeletKey, kubeletCSR, err := pki.NewRequest("system:node:"+cfg.NodeName, []string{"system:nodes"}, opts)
	if err != nil {
		return err
	}
	proxyKey, proxyCSR, err := pki.NewRequest("system:kube-proxy", nil, opts)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range controlPlaneMembers(d.cluster.g.Members()) {
		var resp nodeCertsResponse
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		sent := d.d.Now()
		err := d.cluster.cli.Call(cctx, m.Meta.RPCAddr.String(), methodNodeCerts,
			nodeCertsRequest{KubeletCSR: kubeletCSR, ProxyCSR: proxyCSR}, &resp)
		cancel()
		if err != nil {
			// A clock off by more than the RPC's replay window is
			// refused there, with the skew named.
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			continue
		}
		// Within the window, a skew still worth an operator's look:
		// certificates are back-dated 5 minutes, expiry checks are not.
		local := sent.Add(d.d.Now().Sub(sent) / 2)
		for _, f := range nodecheck.ClockSkew(local, map[string]time.Time{m.Name: resp.Now}, clockSkewWarning) {
			d.d.Log.Warn("clock skew", "problem", f.Problem, "fix", f.Fix)
		}
		return d.installWorkerCredentials(resp, kubeletKey, proxyKey)
	}
	if len(errs) == 0 {
		return errors.New("no control-plane agent in the gossip view yet")
	}
	return fmt.Errorf("no control-plane agent signed this worker's certificates: %w", errors.Join(errs...))
}

func (d *Daemon) installWorkerCredentials(resp nodeCertsResponse, kubeletKey, proxyKey []byte) error {
	cfg := d.d.Config
	root := d.d.Root
	ca, err := pki.ParseCertPEM(resp.CACert)
	if err != nil {
		return fmt.Errorf("the cluster CA a control-plane agent sent: %w", err)
	}
	// The first CA this node is given is pinned; another one later means
	// another cluster (or an attacker with the secret) and is refused.
	if _, err := token.NewPin(root, "").CheckCert(resp.CACert); err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		pem  []byte
	}{{"kubelet", resp.KubeletCert}, {"kube-proxy", resp.ProxyCert}} {
		cert, err := pki.ParseCertPEM(c.pem)
		if err != nil {
			return fmt.Errorf("the %s certificate a control-plane agent sent: %w", c.name, err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return fmt.Errorf("the %s certificate a control-plane agent sent does not verify against the cluster CA: %w", c.name, err)
		}
	}
	if err := root.MkdirAll(bootstrap.PKIDir, 0o755); err != nil {
		return err
	}
	server := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(APILoadBalancerPort))
	kubeletConf, err := bootstrap.Kubeconfig(bootstrap.KubeconfigSpec{
		Cluster: cfg.ClusterName, Server: server, CAPEM: resp.CACert,
		User: "system:node:" + cfg.NodeName, ClientCertFile: bootstrap.KubeletClientCert,
	})
	if err != nil {
		return err
	}
	proxyConf, err := bootstrap.Kubeconfig(bootstrap.KubeconfigSpec{
		Cluster: cfg.ClusterName, Server: server, CAPEM: resp.CACert,
		User: "system:kube-proxy", ClientCertFile: KubeProxyClientCert,
	})
	if err != nil {
		return err
	}
	for _, f := range []struct {
		path string
		data []byte
		mode fs.FileMode
	}{
		{bootstrap.PKIDir + "/ca.crt", resp.CACert, 0o644},
		{bootstrap.KubeletClientCert, slices.Concat(resp.KubeletCert, kubeletKey), 0o600},
		{KubeProxyClientCert, slices.Concat(resp.ProxyCert, proxyKey), 0o600},
		{bootstrap.KubeletKubeconfig, kubeletConf, 0o600},
		{bootstrap.KubeProxyKubeconfig, proxyConf, 0o600},
	} {
		if _, err := root.WriteFile(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	d.d.Log.Info("installed this worker's kubelet and kube-proxy credentials", "ca", ca.Subject.CommonName, "expires", ca.NotAfter)
	return nil
}

// controlPlaneMembers lists the alive control-plane agents that advertise
// an RPC address, in name order.
func controlPlaneMembers(ms []gossip.Member) []gossip.Member {
	var out []gossip.Member
	for _, m := range ms {
		if m.MetaErr == nil && m.State == gossip.StateAlive && m.Meta.Role == config.RoleControlPlane && m.Meta.RPCAddr.IsValid() {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b gossip.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// apiEndpoints are the API servers the load balancer spreads to: every
// control-plane member's advertise address at the API server port.
func apiEndpoints(ms []gossip.Member, port int) []string {
	var eps []string
	for _, m := range controlPlaneMembers(ms) {
		eps = append(eps, net.JoinHostPort(m.Meta.RPCAddr.Addr().String(), strconv.Itoa(port)))
	}
	return eps
}

// workerHealthTLS is the load balancer's probe identity: the kubelet's
// current client certificate (re-read on every probe, so a rotation is
// picked up) and the pinned cluster CA.
func workerHealthTLS(d *Daemon) (*tls.Config, error) {
	caPEM, err := d.d.Root.ReadFile(bootstrap.PKIDir + "/ca.crt")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no certificate in the cluster CA file")
	}
	store := d.d.Root.Path(bootstrap.KubeletClientCert)
	return &tls.Config{
		RootCAs:    pool,
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(store, store)
			if err != nil {
				return nil, err
			}
			return &c, nil
		},
	}, nil
}

// workerSide is a worker's state in the watch loop: its credentials, the
// API load balancer and when it last asked for certificates.
type workerSide struct {
	creds     bool
	lastFetch time.Time
	lastCheck time.Time
	// renewed is set while renewal's fetch is still to succeed.
	renewed bool
	// lb is set once by the watch loop and read by status.
	lb atomic.Pointer[apilb.LB]
}

// workerTick gets the worker's credentials from a control-plane agent,
// keeps the API load balancer's endpoints in step with the gossip view,
// and starts the node's runtime, kubelet and kube-proxy through it.
func (d *Daemon) workerTick(ctx context.Context) {
	w := &d.worker
	// Hourly, as on control-plane nodes: credentials inside the renewal
	// window are asked for again (the kubelet also rotates its own client
	// certificate through the CSR API; kube-proxy's is the agent's job).
	if w.creds && d.d.Now().Sub(w.lastCheck) >= renewCheckInterval {
		w.lastCheck = d.d.Now()
		if !workerCredentialsValid(d) {
			d.d.Log.Info("this worker's credentials are inside the renewal window: asking a control-plane agent for new ones")
			w.creds, w.renewed = false, true
		}
	}
	if !w.creds {
		if workerCredentialsValid(d) {
			w.creds = true
		} else {
			if d.d.Now().Sub(w.lastFetch) < 5*time.Second {
				return
			}
			w.lastFetch = d.d.Now()
			if err := d.fetchWorkerCredentials(ctx); err != nil {
				d.setWaiting("a control-plane agent to sign this worker's kubelet certificate: " + err.Error())
				return
			}
			w.creds = true
			if w.renewed {
				// The running kubelet and kube-proxy read their
				// credentials at start.
				w.renewed = false
				d.restartWorkerUnits(ctx)
			}
		}
		w.lastCheck = d.d.Now()
	}
	lb := w.lb.Load()
	if lb == nil {
		tlsCfg, err := workerHealthTLS(d)
		if err == nil {
			lb, err = apilb.New(apilb.Options{
				Listen:    net.JoinHostPort("127.0.0.1", strconv.Itoa(APILoadBalancerPort)),
				HealthTLS: tlsCfg,
				Log:       d.d.Log.With("component", "apilb"),
			})
		}
		if err != nil {
			d.setWaiting("the API load balancer: " + err.Error())
			return
		}
		w.lb.Store(lb)
		go func() {
			if err := lb.Run(ctx); err != nil {
				d.d.Log.Error("API load balancer stopped", "err", err)
			}
		}()
	}
	eps := apiEndpoints(d.cluster.g.Members(), d.d.Config.APIServer.Port)
	lb.SetEndpoints(eps)
	if len(eps) == 0 {
		d.setWaiting("a control-plane node in the gossip view, for the API load balancer")
		return
	}
	d.setWaiting("")
	// The worker's agent reads the Nodes (for the pod routes) as
	// kube-proxy, whose system:node-proxier role may list them; the
	// kubelet's own identity may read its Node only.
	d.node.kick(ctx, d.written, bootstrap.KubeProxyKubeconfig)
}
