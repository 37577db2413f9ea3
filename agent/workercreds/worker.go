package workercreds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/agent/joinserver"
	"github.com/ecom-platform/ecom-agent/apilb"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodecheck"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/token"
	"github.com/ecom-platform/ecom-agent/units"
)

func (w *Worker) restartUnits(ctx context.Context) {
	for _, name := range []string{bootstrap.KubeletUnit, bootstrap.KubeProxyUnit} {
		sctx, cancel := context.WithTimeout(ctx, units.JobWait)
		st, err := w.d.Systemd.Status(sctx, name)
		if err == nil && st.ActiveState == units.Active {
			err = w.d.Systemd.Restart(sctx, name)
		}
		cancel()
		if err != nil {
			w.d.Log.Warn("restart after renewing its credentials", "unit", name, "err", err)
		}
	}
}

func (w *Worker) credentialsValid() bool {
	for _, p := range []string{bootstrap.KubeletClientCert, bootstrap.KubeProxyClientCert} {
		data, err := w.d.Root.ReadFile(p)
		if err != nil {
			return false
		}
		kp, err := pki.ParseCombinedPEM(data)
		if err != nil {
			return false
		}
		window := w.d.Config.PKI.RenewBefore.Duration
		if w.d.Now().Add(window).After(kp.Cert.NotAfter) {
			return false
		}
	}
	if _, err := gossip.ReadKeyFile(w.d.Root, bootstrap.GossipKeyFile); err != nil {
		return false
	}
	ok, _ := w.d.Root.Exists(bootstrap.KubeletKubeconfig)
	return ok
}

func (w *Worker) fetch(ctx context.Context) error {
	cfg := w.d.Config
	opts := bootstrap.PKIOptions(cfg)
	kubeletKey, kubeletCSR, err := pki.NewRequest("system:node:"+cfg.NodeName, []string{"system:nodes"}, opts)
	if err != nil {
		return err
	}
	proxyKey, proxyCSR, err := pki.NewRequest("system:kube-proxy", nil, opts)
	if err != nil {
		return err
	}
	req := joinserver.WorkerRequest{NodeName: cfg.NodeName, KubeletCSR: kubeletCSR, ProxyCSR: proxyCSR}
	auths, err := w.credentials()
	if err != nil {
		return err
	}
	var errs []error
	for _, addr := range joinServers(cfg, w.d.Members()) {
		var resp joinserver.WorkerResponse
		var used auth
		sent := w.d.Now()
		err := errors.New("no credential")
		for _, a := range auths {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			resp, err = call(cctx, addr, a, req)
			cancel()
			if err == nil {
				used = a
				break
			}
			errs = append(errs, fmt.Errorf("%s with its %s: %w", addr, a, err))
		}
		if err != nil {
			continue
		}
		// Certificates are back-dated 5 minutes, expiry checks are
		// not: a skew is worth an operator's look.
		local := sent.Add(w.d.Now().Sub(sent) / 2)
		for _, f := range nodecheck.ClockSkew(local, map[string]time.Time{addr: resp.Now}, clockSkewWarning) {
			w.d.Log.Warn("clock skew", "problem", f.Problem, "fix", f.Fix)
		}
		return w.install(resp, used, kubeletKey, proxyKey)
	}
	return fmt.Errorf("no control-plane agent signed this worker's certificates: %w", errors.Join(errs...))
}

func (w *Worker) install(resp joinserver.WorkerResponse, used auth, kubeletKey, proxyKey []byte) error {
	cfg := w.d.Config
	root := w.d.Root
	ca, err := pki.ParseCertPEM(resp.CACert)
	if err != nil {
		return fmt.Errorf("the cluster CA a control-plane agent sent: %w", err)
	}
	if len(resp.GossipKey) != gossip.KeySize {
		return fmt.Errorf("the gossip key a control-plane agent sent is %d bytes, not %d", len(resp.GossipKey), gossip.KeySize)
	}
	// A token join installs the CA its token pins, nothing else (the
	// TLS check already saw it sign the endpoint).
	if used.cert == nil {
		if err := token.CheckCA(resp.CACert, used.tok.CAHash()); err != nil {
			return fmt.Errorf("the cluster CA a control-plane agent sent: %w", err)
		}
	}
	// The first CA this node is given is pinned; another one later means
	// another cluster and is refused.
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
	// The gossip key first: credentials found valid later must come with
	// it (credentialsValid checks both).
	if err := gossip.WriteKeyFile(root, bootstrap.GossipKeyFile, resp.GossipKey); err != nil {
		return fmt.Errorf("the gossip key a control-plane agent sent: %w", err)
	}
	server := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(bootstrap.APILoadBalancerPort))
	kubeletConf, err := bootstrap.Kubeconfig(bootstrap.KubeconfigSpec{
		Cluster: cfg.ClusterName, Server: server, CAPEM: resp.CACert,
		User: "system:node:" + cfg.NodeName, ClientCertFile: bootstrap.KubeletClientCert,
	})
	if err != nil {
		return err
	}
	proxyConf, err := bootstrap.Kubeconfig(bootstrap.KubeconfigSpec{
		Cluster: cfg.ClusterName, Server: server, CAPEM: resp.CACert,
		User: "system:kube-proxy", ClientCertFile: bootstrap.KubeProxyClientCert,
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
		{bootstrap.KubeProxyClientCert, slices.Concat(resp.ProxyCert, proxyKey), 0o600},
		{bootstrap.KubeletKubeconfig, kubeletConf, 0o600},
		{bootstrap.KubeProxyKubeconfig, proxyConf, 0o600},
	} {
		if _, err := root.WriteFile(f.path, f.data, f.mode); err != nil {
			return err
		}
	}

	w.d.Log.Info("installed this worker's kubelet and kube-proxy credentials", "ca", ca.Subject.CommonName, "expires", ca.NotAfter)
	return nil
}

func joinServers(cfg *config.Config, ms []gossip.Member) []string {
	out := cfg.JoinServerAddrs()
	for _, m := range controlPlaneMembers(ms) {
		a := joinserver.ServerAddr(m.Meta.RPCAddr.Addr(), cfg.Join.Port)
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

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

func apiEndpoints(ms []gossip.Member, port int) []string {
	var eps []string
	for _, m := range controlPlaneMembers(ms) {
		eps = append(eps, net.JoinHostPort(m.Meta.RPCAddr.Addr().String(), strconv.Itoa(port)))
	}
	return eps
}

func (w *Worker) healthTLS() (*tls.Config, error) {
	caPEM, err := w.d.Root.ReadFile(bootstrap.PKIDir + "/ca.crt")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no certificate in the cluster CA file")
	}
	store := w.d.Root.Path(bootstrap.KubeletClientCert)
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

const Name = "worker-credentials"

const renewCheckInterval = time.Hour

type Systemd interface {
	Status(ctx context.Context, name string) (units.UnitStatus, error)
	Restart(ctx context.Context, name string) error
}

type Deps struct {
	Config  *config.Config
	Root    *hostfs.Root
	Log     *slog.Logger
	Systemd Systemd
	Now     func() time.Time
	// Members is the gossip view.
	Members func() []gossip.Member
}

type Worker struct {
	d    Deps
	cond *component.Condition

	mu        sync.Mutex
	creds     bool
	lastFetch time.Time
	lastCheck time.Time
	// renewed is set while renewal's fetch is still to succeed.
	renewed bool
	ready   bool
	lb      *apilb.LB
	stopLB  context.CancelFunc
	lbDone  chan struct{}
}

var (
	_ component.Component = (*Worker)(nil)
	_ component.Reporter  = (*Worker)(nil)
)

func New(d Deps) *Worker {
	if d.Now == nil {
		d.Now = time.Now
	}
	w := &Worker{d: d, cond: component.NewCondition(Name)}
	// Until a step finds or gets its credentials, the worker waits for
	// them: `join` returns only once this condition is gone.
	w.cond.Set(status.ReasonWaitForCredentials, "its credentials (not checked yet)")
	return w
}

func (w *Worker) Name() string { return Name }

func (w *Worker) Step(ctx context.Context) error {
	now := w.d.Now()
	w.mu.Lock()
	if w.creds && now.Sub(w.lastCheck) >= renewCheckInterval {
		w.lastCheck = now
		if !w.credentialsValid() {
			w.d.Log.Info("this worker's credentials are inside the renewal window: asking a control-plane agent for new ones")
			w.creds, w.renewed = false, true
		}
	}
	creds, renewed, lastFetch := w.creds, w.renewed, w.lastFetch
	w.mu.Unlock()
	if !creds {
		if !w.credentialsValid() {
			if now.Sub(lastFetch) < 5*time.Second {
				return nil
			}
			w.mu.Lock()
			w.lastFetch = now
			w.mu.Unlock()
			if err := w.fetch(ctx); err != nil {
				// Refused: `join` exits 5 once it lasts, instead of
				// waiting out its timeout; the agent keeps asking, so a
				// new token in the config's file is taken up.
				if refused(err) {
					w.cond.Refuse(status.ReasonRefused, "the cluster refuses this worker: "+err.Error())
					return nil
				}
				w.cond.Set(status.ReasonWaitForCredentials, "a control-plane agent to sign this worker's kubelet certificate: "+err.Error())
				return nil
			}
			if renewed {
				// The running kubelet and kube-proxy read their
				// credentials at start.
				w.restartUnits(ctx)
			}
		}
		w.mu.Lock()
		w.creds, w.renewed, w.lastCheck = true, false, w.d.Now()
		w.mu.Unlock()
	}
	lb, err := w.loadBalancer(ctx)
	if err != nil {
		w.cond.Set(status.ReasonFailed, "the API load balancer: "+err.Error())
		return err
	}
	eps := apiEndpoints(w.d.Members(), w.d.Config.APIServer.Port)
	lb.SetEndpoints(eps)
	if len(eps) == 0 {
		w.cond.Set(status.ReasonWaitForControlPlane, "a control-plane node in the gossip view, for the API load balancer")
		return nil
	}
	w.cond.Clear()
	w.mu.Lock()
	w.ready = true
	w.mu.Unlock()
	return nil
}

func (w *Worker) loadBalancer(ctx context.Context) (*apilb.LB, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lb != nil {
		return w.lb, nil
	}
	tlsCfg, err := w.healthTLS()
	if err != nil {
		return nil, err
	}
	lb, err := apilb.New(apilb.Options{
		Listen:    net.JoinHostPort("127.0.0.1", strconv.Itoa(bootstrap.APILoadBalancerPort)),
		HealthTLS: tlsCfg,
		Log:       w.d.Log.With("component", "apilb"),
	})
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := lb.Run(lctx); err != nil {
			w.d.Log.Error("API load balancer stopped", "err", err)
		}
	}()
	w.lb, w.stopLB, w.lbDone = lb, cancel, done
	return lb, nil
}

func (w *Worker) Ready() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ready
}

func (w *Worker) Report(s *status.Status) { w.cond.Report(s) }

func (w *Worker) LoadBalancer() []apilb.EndpointStatus {
	w.mu.Lock()
	lb := w.lb
	w.mu.Unlock()
	if lb == nil {
		return nil
	}
	return lb.Status()
}

func (w *Worker) Stop(ctx context.Context) error {
	w.mu.Lock()
	cancel, done := w.stopLB, w.lbDone
	w.lb, w.stopLB, w.lbDone = nil, nil, nil
	w.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
