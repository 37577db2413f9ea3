package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
)

// Written records one file a phase wrote or kept.
type Written struct {
	Path   string        `json:"path"`
	Result hostfs.Result `json:"-"`
	// Action is Result as text: created, updated or unchanged.
	Action string `json:"action"`
	// Note says why, for certificates ("re-issued: SANs changed").
	Note string `json:"note,omitempty"`
}

// Renderer writes a node's files through a host root. It is built once per
// run and carries the CAs between phases so they are loaded once.
type Renderer struct {
	cfg     *config.Config
	root    *hostfs.Root
	log     *slog.Logger
	pkiOpts pki.Options
	store   *pki.Store
	// Membership is the etcd membership to render; empty until the quorum
	// phase decides it.
	Membership EtcdMembership
	// SkipUnitFiles leaves the systemd units to the caller: the daemon
	// applies them through units.Manager, which also reloads systemd.
	SkipUnitFiles bool

	cas     map[pki.CAName]*pki.Authority
	written []Written
}

// NewRenderer returns a Renderer for cfg writing under root.
func NewRenderer(cfg *config.Config, root *hostfs.Root, log *slog.Logger) *Renderer {
	opts := PKIOptions(cfg)
	return &Renderer{
		cfg:     cfg,
		root:    root,
		log:     log,
		pkiOpts: opts,
		store:   pki.NewStore(root, opts),
		cas:     map[pki.CAName]*pki.Authority{},
	}
}

// PKIOptions maps the config's PKI section to the pki package's options.
func PKIOptions(cfg *config.Config) pki.Options {
	return pki.Options{
		KeyAlgorithm: string(cfg.PKI.KeyAlgorithm),
		CAValidity:   cfg.PKI.CAValidity.Duration,
		CertValidity: cfg.PKI.CertValidity.Duration,
		RenewBefore:  cfg.PKI.RenewBefore.Duration,
	}
}

// PKINode is the node identity certificates are issued for.
func PKINode(cfg *config.Config) pki.Node {
	return pki.Node{
		Name:          cfg.NodeName,
		AdvertiseIP:   cfg.AdvertiseAddress,
		ServiceIP:     cfg.APIServerServiceIP(),
		ClusterDomain: cfg.Network.ClusterDomain,
		ExtraSANs:     apiServerSANs(cfg),
	}
}

// apiServerSANs are apiserver.extra_sans, control_plane_endpoint's host
// and the control plane's VIP, which clients check the API server's
// certificate against.
func apiServerSANs(cfg *config.Config) []string {
	sans := slices.Clone(cfg.APIServer.ExtraSANs)
	if host, _, ok := cfg.ControlPlaneEndpointHostPort(); ok && !slices.Contains(sans, host) {
		sans = append(sans, host)
	}
	if a := cfg.ControlPlaneVIP.Address; a.IsValid() && !slices.Contains(sans, a.String()) {
		sans = append(sans, a.String())
	}
	return sans
}

// RenderPhase is one named, idempotent step of rendering a node: it
// reuses what matches, refuses what conflicts and creates what is
// missing. (A node's own phases, waiting-for-peers to api-ready, are
// nodestate.Phase.)
type RenderPhase struct {
	Name string
	Run  func(r *Renderer, ctx context.Context) error
}

// Phases lists the phases for this node's role, in order.
func (r *Renderer) Phases() []RenderPhase {
	if r.cfg.IsControlPlane() {
		return []RenderPhase{
			{"pki", (*Renderer).phasePKI},
			{"kubeconfigs", (*Renderer).phaseKubeconfigs},
			{"kubelet-certs", (*Renderer).phaseKubeletCerts},
			{"etcd-config", (*Renderer).phaseEtcdConfig},
			{"control-plane-config", (*Renderer).phaseControlPlaneConfig},
			{"kube-proxy-config", (*Renderer).phaseKubeProxyConfig},
			{"containerd-config", (*Renderer).phaseContainerdConfig},
			{"kubelet-config", (*Renderer).phaseKubeletConfig},
			{"units", (*Renderer).phaseUnits},
		}
	}
	// A worker holds no CA key: its kubelet certificates and kubeconfig
	// are issued by a control-plane agent when it joins.
	return []RenderPhase{
		{"containerd-config", (*Renderer).phaseContainerdConfig},
		{"kube-proxy-config", (*Renderer).phaseKubeProxyConfig},
		{"kubelet-config", (*Renderer).phaseKubeletConfig},
		{"units", (*Renderer).phaseUnits},
	}
}

// Run runs every phase in order and returns what was written. An error
// names the phase that failed: "phase pki: etcd/ca: ...".
func (r *Renderer) Run(ctx context.Context) ([]Written, error) {
	r.written = nil
	for _, p := range r.Phases() {
		if p.Name == "units" && r.SkipUnitFiles {
			continue
		}
		if err := ctx.Err(); err != nil {
			return r.written, err
		}
		r.log.Debug("phase start", "phase", p.Name)
		if err := p.Run(r, ctx); err != nil {
			return r.written, fmt.Errorf("phase %s: %w", p.Name, err)
		}
	}
	return r.written, nil
}

// write writes one file and records the result.
func (r *Renderer) write(path string, data []byte, mode fs.FileMode, note string) error {
	res, err := r.root.WriteFile(path, data, mode)
	if err != nil {
		return err
	}
	r.record(path, res, note)
	return nil
}

func (r *Renderer) record(path string, res hostfs.Result, note string) {
	r.written = append(r.written, Written{Path: path, Result: res, Action: res.String(), Note: note})
	if res != hostfs.Unchanged {
		r.log.Info("wrote file", "path", path, "action", res.String(), "note", note)
	}
}

func (r *Renderer) authority(name pki.CAName) (*pki.Authority, error) {
	if a, ok := r.cas[name]; ok {
		return a, nil
	}
	a, err := r.store.LoadAuthority(name)
	if err != nil {
		return nil, err
	}
	r.cas[name] = a
	return a, nil
}

func (r *Renderer) phasePKI(_ context.Context) error {
	outcomes, err := pki.EnsureControlPlane(r.store, PKINode(r.cfg))
	for _, o := range outcomes {
		r.recordOutcome(o)
	}
	return err
}

func (r *Renderer) recordOutcome(o pki.Outcome) {
	res, note := hostfs.Unchanged, ""
	switch o.Action {
	case pki.Created:
		res = hostfs.Created
	case pki.Reissued:
		res, note = hostfs.Updated, "re-issued: "+o.Reason.String()
	}
	paths := []string{pki.CertPath(o.Name), pki.KeyPath(o.Name)}
	if o.Name == "sa" {
		paths = []string{pki.ServiceAccountKey, pki.ServiceAccountPub}
	}
	for _, p := range paths {
		r.record(p, res, note)
	}
}

// kubeconfigEntry is one kubeconfig a control-plane node gets with its
// client certificate embedded.
type kubeconfigEntry struct {
	path string
	spec string // the pki.CertSpec name
	// server is which API server address it names.
	server serverKind
}

// serverKind is which address of the API a kubeconfig names.
type serverKind int

const (
	// serverLocal: this node's API server on loopback (the node's own
	// components).
	serverLocal serverKind = iota
	// serverNode: this node's API server at its advertised address
	// (super-admin.conf, the break-glass identity, which must not
	// depend on an endpoint outside the node).
	serverNode
	// serverCluster: control_plane_endpoint when set, else serverNode
	// (admin.conf, the operators' kubeconfig).
	serverCluster
)

// embeddedCertKubeconfigs are the kubeconfigs that embed a client
// certificate: the renderer issues them, the certificate inventory lists
// them.
var embeddedCertKubeconfigs = []kubeconfigEntry{
	{AdminKubeconfig, "admin", serverCluster},
	{SuperAdminKubeconfig, "super-admin", serverNode},
	{ControllerManagerKubeconfig, "controller-manager", serverLocal},
	{SchedulerKubeconfig, "scheduler", serverLocal},
	{AgentKubeconfig, "ecom-agent", serverLocal},
	{KubeProxyKubeconfig, "kube-proxy", serverLocal},
}

func (r *Renderer) localAPIServer() string {
	return "https://" + netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(r.cfg.APIServer.Port)).String()
}

// AdvertisedAPIServer is the URL of a control-plane node's API server at
// its advertised address.
func AdvertisedAPIServer(cfg *config.Config) string {
	return "https://" + netip.AddrPortFrom(cfg.AdvertiseAddress, uint16(cfg.APIServer.Port)).String()
}

// ClusterAPIServer is the URL clients outside the control plane use:
// control_plane_endpoint when it is set (kubeadm's
// --control-plane-endpoint: a name or address that outlives any one
// node), else this node's advertised address.
func ClusterAPIServer(cfg *config.Config) string {
	host, port, ok := cfg.ControlPlaneEndpointHostPort()
	if !ok {
		return AdvertisedAPIServer(cfg)
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(port))
}

func (r *Renderer) phaseKubeconfigs(_ context.Context) error {
	ca, err := r.authority(pki.CA)
	if err != nil {
		return err
	}
	specs := map[string]pki.CertSpec{}
	for _, s := range pki.KubeconfigCerts(PKINode(r.cfg)) {
		specs[s.Name] = s
	}
	for _, e := range embeddedCertKubeconfigs {
		spec, ok := specs[e.spec]
		if !ok {
			return fmt.Errorf("%s: no certificate spec %q", e.path, e.spec)
		}
		if err := r.ensureKubeconfig(ca, e, spec); err != nil {
			return fmt.Errorf("%s: %w", e.path, err)
		}
	}
	// The kubelet's kubeconfig points at its certificate store, so the
	// kubelet's own rotation keeps it current.
	data, err := Kubeconfig(KubeconfigSpec{
		Cluster:        r.cfg.ClusterName,
		Server:         r.localAPIServer(),
		CAPEM:          ca.CertPEM(),
		User:           "system:node:" + r.cfg.NodeName,
		ClientCertFile: KubeletClientCert,
	})
	if err != nil {
		return err
	}
	return r.write(KubeletKubeconfig, data, 0o600, "")
}

// ensureKubeconfig keeps a kubeconfig whose embedded certificate is still
// valid for its spec and re-issues it otherwise.
func (r *Renderer) ensureKubeconfig(ca *pki.Authority, e kubeconfigEntry, spec pki.CertSpec) error {
	server := r.localAPIServer()
	switch e.server {
	case serverNode:
		server = AdvertisedAPIServer(r.cfg)
	case serverCluster:
		server = ClusterAPIServer(r.cfg)
	}
	var certPEM, keyPEM []byte
	note := "issued"
	if old, err := r.root.ReadFile(e.path); err == nil {
		c, k, perr := EmbeddedCredentials(old)
		if perr == nil && len(c) > 0 {
			reason, cerr := pki.Check(c, k, ca.Cert(), spec, r.pkiOpts)
			if cerr != nil {
				return cerr
			}
			if reason.Reusable() {
				certPEM, keyPEM, note = c, k, ""
			} else {
				note = "re-issued: " + reason.String()
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if certPEM == nil {
		kp, err := ca.Issue(spec, r.pkiOpts)
		if err != nil {
			return err
		}
		certPEM, keyPEM = kp.CertPEM, kp.KeyPEM
	}
	data, err := Kubeconfig(KubeconfigSpec{
		Cluster: r.cfg.ClusterName,
		Server:  server,
		CAPEM:   ca.CertPEM(),
		User:    spec.CommonName,
		CertPEM: certPEM,
		KeyPEM:  keyPEM,
	})
	if err != nil {
		return err
	}
	return r.write(e.path, data, 0o600, note)
}

// phaseKubeletCerts seeds the kubelet's certificate store with a client
// and a serving certificate, so it talks TLS from its first second; it
// rotates both through CSRs afterwards.
func (r *Renderer) phaseKubeletCerts(_ context.Context) error {
	ca, err := r.authority(pki.CA)
	if err != nil {
		return err
	}
	n := PKINode(r.cfg)
	for _, c := range []struct {
		path string
		spec pki.CertSpec
	}{
		{KubeletClientCert, pki.KubeletClientCert(n)},
		{KubeletServerCert, pki.KubeletServingCert(n)},
	} {
		if err := r.ensureCombined(ca, c.path, c.spec); err != nil {
			return fmt.Errorf("%s: %w", c.path, err)
		}
	}
	return nil
}

func (r *Renderer) ensureCombined(ca *pki.Authority, path string, spec pki.CertSpec) error {
	note := "issued"
	if old, err := r.root.ReadFile(path); err == nil {
		if kp, perr := pki.ParseCombinedPEM(old); perr == nil {
			reason, cerr := pki.Check(kp.CertPEM, kp.KeyPEM, ca.Cert(), spec, r.pkiOpts)
			if cerr != nil {
				return cerr
			}
			if reason.Reusable() {
				r.record(path, hostfs.Unchanged, "")
				return nil
			}
			note = "re-issued: " + reason.String()
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	kp, err := ca.Issue(spec, r.pkiOpts)
	if err != nil {
		return err
	}
	if err := r.root.MkdirAll(KubeletPKIDir, 0o700); err != nil {
		return err
	}
	return r.write(path, kp.CombinedPEM(), 0o600, note)
}

func (r *Renderer) phaseEtcdConfig(_ context.Context) error {
	data, err := EtcdConfig(r.cfg, r.Membership)
	if err != nil {
		return err
	}
	if err := r.root.MkdirAll(EtcdDataDir, 0o700); err != nil {
		return err
	}
	return r.write(EtcdConfigFile, data, 0o600, "")
}

func (r *Renderer) phaseControlPlaneConfig(_ context.Context) error {
	key, note, err := r.encryptionKey()
	if err != nil {
		return err
	}
	enc, err := EncryptionConfig(key)
	if err != nil {
		return err
	}
	if err := r.root.MkdirAll("/etc/kubernetes/encryption", 0o700); err != nil {
		return err
	}
	if err := r.write(EncryptionConfigFile, enc, 0o600, note); err != nil {
		return err
	}
	audit, err := AuditPolicy()
	if err != nil {
		return err
	}
	if err := r.root.MkdirAll("/var/log/kubernetes/audit", 0o700); err != nil {
		return err
	}
	return r.write(AuditPolicyFile, audit, 0o600, "")
}

// encryptionKey returns the key Secrets are encrypted with: the existing
// one when there is a config, a new one only when there is none. A config
// that exists but cannot be read is an error, never a new key: a new key
// would make every stored Secret unreadable.
func (r *Renderer) encryptionKey() ([]byte, string, error) {
	old, err := r.root.ReadFile(EncryptionConfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := NewEncryptionKey()
		return key, "new encryption key", err
	}
	if err != nil {
		return nil, "", err
	}
	key, err := EncryptionKey(old)
	if err != nil {
		return nil, "", fmt.Errorf("%s exists but has no usable key (%w); refusing to generate a new one, which would make every stored Secret unreadable. Restore the file from another control-plane node", EncryptionConfigFile, err)
	}
	return key, "", nil
}

func (r *Renderer) phaseKubeProxyConfig(_ context.Context) error {
	data, err := KubeProxyConfigYAML(KubeProxyConfiguration(r.cfg))
	if err != nil {
		return err
	}
	return r.write(KubeProxyConfigFile, data, 0o644, "")
}

func (r *Renderer) phaseKubeletConfig(_ context.Context) error {
	data, err := KubeletConfigYAML(KubeletConfiguration(r.cfg))
	if err != nil {
		return err
	}
	return r.write(KubeletConfigFile, data, 0o644, "")
}
