// Package kubetest starts a real Kubernetes control plane on loopback for
// integration tests: the node's PKI, kubeconfigs, encryption config and
// audit policy are rendered by the agent's own bootstrap package into a
// temporary root, etcd runs embedded in the test process from the rendered
// etcd config, and the real kube-apiserver binary runs with the flags
// bootstrap.APIServerFlags builds. The point is to test the agent's real
// files and flags, so only what loopback forces is changed: addresses,
// ports and the paths of files (mapped under the temporary root).
//
// The kube-apiserver binary is looked up in $ECOM_KUBE_BIN (a directory),
// else in $ECOM_KUBE_CACHE/<version> (default /var/cache/ecom-agent-kube),
// where `make kube-bins` builds it. Tests skip when it is missing.
package kubetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
)

// Environment variables that locate the Kubernetes binaries.
const (
	// EnvBinDir names a directory holding kube-apiserver; it wins over
	// the cache.
	EnvBinDir = "ECOM_KUBE_BIN"
	// EnvCacheDir is the cache `make kube-bins` builds into, one
	// directory per Kubernetes version.
	EnvCacheDir = "ECOM_KUBE_CACHE"
	// DefaultCacheDir is the cache when EnvCacheDir is unset.
	DefaultCacheDir = "/var/cache/ecom-agent-kube"
)

// BaseConfig is the node config every cluster starts from: a single
// control-plane node. Options add TOML to it (WithConfigTOML) or change
// the parsed config (WithConfig). The advertise address is replaced by
// 127.0.0.1 after parsing: config validation refuses loopback, rightly for
// a real node.
const BaseConfig = `cluster_name = "kubetest"
role = "control-plane"
node_name = "cp-1"
advertise_address = "192.0.2.11"
cluster_secret = "kubetest-secret-0123456789abcdef0123456789"
control_plane_key = "kubetest-cp-key-fedcba9876543210fedcba98"
expect = 1
`

// Loopback is the address every component listens on and advertises.
var Loopback = netip.MustParseAddr("127.0.0.1")

// Cluster is a running control plane: embedded etcd and one kube-apiserver.
type Cluster struct {
	// Admin is a rest.Config with system:masters rights, read from the
	// rendered super-admin kubeconfig.
	Admin *rest.Config
	// Root is the rendered node's root.
	Root *hostfs.Root
	// Config is the node config the files were rendered from, with the
	// loopback address and the ports actually used.
	Config *config.Config
	// Etcd is a client of the embedded etcd, authenticated with the API
	// server's etcd client certificate; it reads the raw stored values.
	Etcd *clientv3.Client
	// EtcdURL is the embedded etcd's client URL.
	EtcdURL string
	// URL is the API server's URL, https://127.0.0.1:PORT.
	URL string
	// CAPEM is the cluster CA certificate (the API server's client and
	// serving CA).
	CAPEM []byte
	// APIServerArgs are the arguments kube-apiserver was started with.
	APIServerArgs []string
	// APIServerLog is the real path of kube-apiserver's output.
	APIServerLog string
	// Written lists the files the renderer wrote.
	Written []bootstrap.Written
	// ReadyAfter is how long kube-apiserver took from its start to
	// answering /readyz (for benchmarks).
	ReadyAfter time.Duration

	// ControllerManagerLog is the real path of kube-controller-manager's
	// output, when WithControllerManager started it.
	ControllerManagerLog string

	etcd     *embed.Etcd
	proc     *process
	kcm      *process
	stopOnce sync.Once
}

// Option changes how Start builds the cluster.
type Option func(*options)

type options struct {
	toml         string
	configFuncs  []func(*config.Config)
	binDir       string
	readyTimeout time.Duration
	log          io.Writer
	controllers  []string
}

// WithConfigTOML appends TOML to BaseConfig before it is parsed, e.g.
// "[apiserver.extra_flags]\nv = \"4\"\n". Keys BaseConfig sets cannot be
// set again; use WithConfig for those.
func WithConfigTOML(toml string) Option {
	return func(o *options) { o.toml += "\n" + toml + "\n" }
}

// WithConfig changes the parsed config before rendering, after Start has
// set the loopback address and free ports (so f has the last word on them,
// at its own risk).
func WithConfig(f func(*config.Config)) Option {
	return func(o *options) { o.configFuncs = append(o.configFuncs, f) }
}

// WithBinDir takes kube-apiserver from dir instead of $ECOM_KUBE_BIN or
// the cache.
func WithBinDir(dir string) Option {
	return func(o *options) { o.binDir = dir }
}

// WithReadyTimeout bounds the wait for /readyz (default 60s).
func WithReadyTimeout(d time.Duration) Option {
	return func(o *options) { o.readyTimeout = d }
}

// WithControllerManager also runs the real kube-controller-manager, with the
// agent's flags for it (bootstrap.ControllerManagerFlags, paths mapped under
// the root) but only the named controllers (e.g. "garbagecollector",
// "deployment", "replicaset", "statefulset"), no serving port and no leader
// election. There are no nodes: pods stay Pending, but the objects the
// controllers write (ReplicaSets, pods, claims, owner references) are real.
func WithControllerManager(controllers ...string) Option {
	return func(o *options) { o.controllers = controllers }
}

// WithRenderLog sends the renderer's log to w (it is discarded by default).
func WithRenderLog(w io.Writer) Option {
	return func(o *options) { o.log = w }
}

// BinDir returns the directory kube-apiserver is looked up in for a
// Kubernetes version: $ECOM_KUBE_BIN, else $ECOM_KUBE_CACHE/<version>,
// else /var/cache/ecom-agent-kube/<version>.
func BinDir(version string) string {
	if d := os.Getenv(EnvBinDir); d != "" {
		return d
	}
	cache := os.Getenv(EnvCacheDir)
	if cache == "" {
		cache = DefaultCacheDir
	}
	return filepath.Join(cache, version)
}

// Start renders a control-plane node's PKI and config with the agent's own
// bootstrap package into t.TempDir(), starts an embedded etcd with that
// PKI (mTLS, 127.0.0.1, free ports), and the real kube-apiserver binary
// with the flags bootstrap.APIServerFlags builds (paths mapped into the
// temp root), waits for /readyz, and stops everything at t.Cleanup. It
// calls t.Skip when the binary is missing.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	o := options{readyTimeout: 60 * time.Second, log: io.Discard}
	for _, opt := range opts {
		opt(&o)
	}

	cfg, err := config.Parse([]byte(BaseConfig+o.toml), "kubetest.toml", config.LoadOptions{})
	if err != nil {
		t.Fatalf("kubetest: node config: %v", err)
	}

	binDir := o.binDir
	if binDir == "" {
		binDir = BinDir(cfg.KubernetesVersion)
	}
	apiserverBin := filepath.Join(binDir, "kube-apiserver")
	if fi, err := os.Stat(apiserverBin); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		t.Skipf("kube-apiserver not found at %s: run `make kube-bins` (or set $%s to a directory holding it)", apiserverBin, EnvBinDir)
	}

	ports, err := freePorts(3)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	cfg.AdvertiseAddress = Loopback
	cfg.APIServer.Port = ports[0]
	cfg.Etcd.ClientPort = ports[1]
	cfg.Etcd.PeerPort = ports[2]
	for _, f := range o.configFuncs {
		f(cfg)
	}

	root, err := hostfs.New(t.TempDir())
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	c := &Cluster{
		Root:    root,
		Config:  cfg,
		EtcdURL: bootstrap.EtcdClientURL(cfg.AdvertiseAddress, cfg.Etcd.ClientPort),
		URL:     "https://" + netip.AddrPortFrom(cfg.AdvertiseAddress, uint16(cfg.APIServer.Port)).String(),
	}
	// Registered after t.TempDir, so it runs before the directory is
	// removed: nothing may still write into it then.
	t.Cleanup(c.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	r := bootstrap.NewRenderer(cfg, root, slog.New(slog.NewTextHandler(o.log, nil)))
	r.SkipUnitFiles = true
	// What the quorum phase decides for the founding member of a
	// one-node cluster.
	r.Membership = bootstrap.EtcdMembership{
		State: "new",
		Token: "kubetest",
		Peers: map[string]string{cfg.NodeName: bootstrap.EtcdPeerURL(cfg.AdvertiseAddress, cfg.Etcd.PeerPort)},
	}
	c.Written, err = r.Run(ctx)
	if err != nil {
		t.Fatalf("kubetest: render: %v", err)
	}
	c.CAPEM, err = root.ReadFile(pki.CertPath(string(pki.CA)))
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}

	if err := c.startEtcd(ctx); err != nil {
		t.Fatalf("kubetest: embedded etcd: %v", err)
	}

	c.Admin, err = c.kubeconfig(bootstrap.SuperAdminKubeconfig)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}

	flags := c.apiServerFlags()
	c.APIServerArgs = flags.Args()
	c.APIServerLog = filepath.Join(root.Dir(), "kube-apiserver.log")
	apiStart := time.Now()
	c.proc, err = startProcess(apiserverBin, c.APIServerArgs, c.APIServerLog)
	if err != nil {
		t.Fatalf("kubetest: start kube-apiserver: %v", err)
	}
	if err := c.waitReady(o.readyTimeout); err != nil {
		t.Fatalf("kubetest: kube-apiserver not ready: %v\nargs: %s\nlast lines of %s:\n%s",
			err, strings.Join(c.APIServerArgs, " "), c.APIServerLog, tail(c.APIServerLog, 40))
	}
	c.ReadyAfter = time.Since(apiStart)
	if len(o.controllers) > 0 {
		if err := c.startControllerManager(binDir, o.controllers); err != nil {
			t.Fatalf("kubetest: %v", err)
		}
	}
	return c
}

// startControllerManager starts kube-controller-manager from binDir with
// the given controllers.
func (c *Cluster) startControllerManager(binDir string, controllers []string) error {
	bin := filepath.Join(binDir, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("kube-controller-manager: %w (run `make kube-bins`)", err)
	}
	flags := bootstrap.ControllerManagerFlags(c.Config)
	for k, v := range flags {
		flags[k] = c.mapPath(v)
	}
	flags["controllers"] = strings.Join(controllers, ",")
	flags["leader-elect"] = "false"
	flags["secure-port"] = "0"
	c.ControllerManagerLog = filepath.Join(c.Root.Dir(), "kube-controller-manager.log")
	var err error
	c.kcm, err = startProcess(bin, flags.Args(), c.ControllerManagerLog)
	if err != nil {
		return fmt.Errorf("start kube-controller-manager: %w", err)
	}
	return nil
}

// apiServerFlags are the agent's flags for this node with the logical
// paths mapped under the root and the addresses and ports of loopback.
func (c *Cluster) apiServerFlags() bootstrap.Flags {
	flags := bootstrap.APIServerFlags(c.Config, bootstrap.EtcdServers(c.EtcdURL, nil))
	for k, v := range flags {
		flags[k] = c.mapPath(v)
	}
	flags["etcd-servers"] = c.EtcdURL
	flags["secure-port"] = strconv.Itoa(c.Config.APIServer.Port)
	flags["advertise-address"] = c.Config.AdvertiseAddress.String()
	flags["bind-address"] = c.Config.AdvertiseAddress.String()
	// The endpoint reconciler refuses a loopback advertise address
	// ("cannot use public IP 127.0.0.1 with endpoint reconciler"), which a
	// real node never has: config validation refuses it. The kubernetes
	// Service is still created; only its endpoints are not maintained.
	if c.Config.AdvertiseAddress.IsLoopback() {
		flags["endpoint-reconciler-type"] = "none"
	}
	return flags
}

// mappedPrefixes are the logical directories whose paths in flag values
// are resolved under the root.
var mappedPrefixes = []string{"/etc/kubernetes", "/var/log/kubernetes", "/var/lib"}

// mapPath resolves v under the root when it is a logical path of the
// node's files, and returns it unchanged otherwise.
func (c *Cluster) mapPath(v string) string {
	for _, p := range mappedPrefixes {
		if v == p || strings.HasPrefix(v, p+"/") {
			return c.Root.Path(v)
		}
	}
	return v
}

// startEtcd runs etcd in-process from the rendered etcd config, with its
// paths mapped under the root, no metrics listener (its fixed port would
// clash between tests) and its log in a file.
func (c *Cluster) startEtcd(ctx context.Context) error {
	ecfg, err := embed.ConfigFromFile(c.Root.Path(bootstrap.EtcdConfigFile))
	if err != nil {
		return fmt.Errorf("load rendered %s: %w", bootstrap.EtcdConfigFile, err)
	}
	ecfg.Dir = c.mapPath(ecfg.Dir)
	for _, ti := range []*struct{ cert, key, ca *string }{
		{&ecfg.ClientTLSInfo.CertFile, &ecfg.ClientTLSInfo.KeyFile, &ecfg.ClientTLSInfo.TrustedCAFile},
		{&ecfg.PeerTLSInfo.CertFile, &ecfg.PeerTLSInfo.KeyFile, &ecfg.PeerTLSInfo.TrustedCAFile},
	} {
		*ti.cert, *ti.key, *ti.ca = c.mapPath(*ti.cert), c.mapPath(*ti.key), c.mapPath(*ti.ca)
	}
	ecfg.ListenMetricsUrls = nil
	ecfg.LogOutputs = []string{filepath.Join(c.Root.Dir(), "etcd.log")}
	ecfg.LogLevel = "warn"
	ecfg.ZapLoggerBuilder = nil // built for stderr by ConfigFromFile

	e, err := embed.StartEtcd(ecfg)
	if err != nil {
		return err
	}
	c.etcd = e
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return err
	case <-ctx.Done():
		return fmt.Errorf("not ready: %w", ctx.Err())
	}

	tlsCfg, err := c.etcdClientTLS()
	if err != nil {
		return err
	}
	c.Etcd, err = clientv3.New(clientv3.Config{
		Endpoints:   []string{c.EtcdURL},
		TLS:         tlsCfg,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	return err
}

// etcdClientTLS authenticates as kube-apiserver does to etcd.
func (c *Cluster) etcdClientTLS() (*tls.Config, error) {
	const name = "apiserver-etcd-client"
	cert, err := tls.LoadX509KeyPair(c.Root.Path(pki.CertPath(name)), c.Root.Path(pki.KeyPath(name)))
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate: %w", err)
	}
	caPEM, err := c.Root.ReadFile(pki.CertPath(string(pki.EtcdCA)))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("etcd CA holds no certificate")
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// kubeconfig loads a rendered kubeconfig as a rest.Config.
func (c *Cluster) kubeconfig(logical string) (*rest.Config, error) {
	data, err := c.Root.ReadFile(logical)
	if err != nil {
		return nil, err
	}
	kc, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", logical, err)
	}
	// The kubelet's kubeconfig names its certificate store by path.
	for _, a := range kc.AuthInfos {
		a.ClientCertificate, a.ClientKey = c.mapPath(a.ClientCertificate), c.mapPath(a.ClientKey)
	}
	for _, cl := range kc.Clusters {
		cl.CertificateAuthority = c.mapPath(cl.CertificateAuthority)
	}
	rc, err := clientcmd.NewDefaultClientConfig(*kc, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", logical, err)
	}
	if rc.Host != c.URL {
		return nil, fmt.Errorf("%s: server is %s, want %s", logical, rc.Host, c.URL)
	}
	tune(rc)
	return rc, nil
}

// KubeconfigConfig returns a rest.Config read from a kubeconfig the
// renderer wrote, such as bootstrap.AdminKubeconfig, with the files it
// names mapped under the root.
func (c *Cluster) KubeconfigConfig(t testing.TB, logical string) *rest.Config {
	t.Helper()
	rc, err := c.kubeconfig(logical)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return rc
}

// tune raises client-side rate limits: tests are bursty. It sets no
// Timeout, which would cut watches short.
func tune(rc *rest.Config) {
	rc.QPS, rc.Burst = 100, 200
}

// waitReady polls /readyz with the super-admin's credentials until it
// answers 200, the process exits or the timeout passes.
func (c *Cluster) waitReady(timeout time.Duration) error {
	tr, err := rest.TransportFor(c.Admin)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	const interval = 250 * time.Millisecond
	deadline := time.Now().Add(timeout)
	last := errors.New("no answer yet")
	for i := 0; i < int(timeout/interval)+1 && time.Now().Before(deadline); i++ {
		select {
		case <-c.proc.done:
			return fmt.Errorf("kube-apiserver exited: %v", c.proc.err)
		default:
		}
		resp, err := hc.Get(c.URL + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("/readyz: %s: %s", resp.Status, failedChecks(body))
		} else {
			last = err
		}
		select {
		case <-c.proc.done:
			return fmt.Errorf("kube-apiserver exited: %v", c.proc.err)
		case <-time.After(interval):
		}
	}
	return fmt.Errorf("after %s: %w", timeout, last)
}

// failedChecks keeps the failing lines of a /readyz answer.
func failedChecks(body []byte) string {
	var out []string
	for l := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(l, "[-]") {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return strings.TrimSpace(string(body))
	}
	return strings.Join(out, "; ")
}

// Clientset returns a clientset with the Admin credentials.
func (c *Cluster) Clientset(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(rest.CopyConfig(c.Admin))
	if err != nil {
		t.Fatalf("kubetest: clientset: %v", err)
	}
	return cs
}

// RestConfigFor returns a rest.Config for a client certificate issued by
// the cluster CA with this CN and groups (the subject's O).
func (c *Cluster) RestConfigFor(t testing.TB, user string, groups ...string) *rest.Config {
	t.Helper()
	opts := bootstrap.PKIOptions(c.Config)
	ca, err := pki.NewStore(c.Root, opts).LoadAuthority(pki.CA)
	if err != nil {
		t.Fatalf("kubetest: cluster CA: %v", err)
	}
	spec := pki.CertSpec{
		Name:         "kubetest-client",
		CA:           pki.CA,
		CommonName:   user,
		Organization: groups,
		Usages:       []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	kp, err := ca.Issue(spec, opts)
	if err != nil {
		t.Fatalf("kubetest: client certificate for %s: %v", user, err)
	}
	rc := &rest.Config{
		Host: c.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.CAPEM,
			CertData: kp.CertPEM,
			KeyData:  kp.KeyPEM,
		},
	}
	tune(rc)
	return rc
}

// AnonymousConfig returns a rest.Config that trusts the cluster CA and
// presents no credentials.
func (c *Cluster) AnonymousConfig() *rest.Config {
	rc := &rest.Config{Host: c.URL, TLSClientConfig: rest.TLSClientConfig{CAData: c.CAPEM}}
	tune(rc)
	return rc
}

// Path returns the real path of a logical path of the rendered node, such
// as bootstrap.AuditLogFile.
func (c *Cluster) Path(logical string) string { return c.Root.Path(logical) }

// Stop stops the API server, then etcd; it is idempotent and also runs at
// the test's cleanup.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		if c.kcm != nil {
			c.kcm.stop()
		}
		if c.proc != nil {
			c.proc.stop()
		}
		if c.Etcd != nil {
			c.Etcd.Close()
		}
		if c.etcd != nil {
			c.etcd.Close()
		}
	})
}

// freePorts returns n distinct TCP ports free on loopback just now. The
// listeners stay open until all are picked, so the kernel hands out n
// different ones.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tail returns the last n lines of a file, or why it cannot.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
