package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
)

// One cluster serves every check: starting kube-apiserver is the slow part.
func TestCluster(t *testing.T) {
	c := Start(t)
	cs := c.Clientset(t)

	t.Run("ReadyAndVersion", func(t *testing.T) { testReadyAndVersion(t, c, cs) })
	t.Run("EncryptionAtRest", func(t *testing.T) { testEncryptionAtRest(t, c, cs) })
	t.Run("Authorization", func(t *testing.T) { testAuthorization(t, c) })
	t.Run("Kubeconfigs", func(t *testing.T) { testKubeconfigs(t, c) })
	t.Run("AuditLog", func(t *testing.T) { testAuditLog(t, c, cs) })
	t.Run("Stop", func(t *testing.T) { testStop(t, c) })
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// poll calls f every 100ms until it returns nil, at most for d.
func poll(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	var err error
	for i := 0; i < int(d/(100*time.Millisecond))+1; i++ {
		if err = f(); err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func testReadyAndVersion(t *testing.T, c *Cluster, cs kubernetes.Interface) {
	ctx := ctxFor(t)
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimPrefix(c.Config.KubernetesVersion, "v"), ".")
	if got := strings.TrimSuffix(v.Minor, "+"); got != parts[1] || v.Major != parts[0] {
		t.Errorf("server version %s.%s (%s), want the configured %s", v.Major, v.Minor, v.GitVersion, c.Config.KubernetesVersion)
	}
	// The bootstrap controller creates the service shortly after start.
	err = poll(10*time.Second, func() error {
		svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if want := c.Config.APIServerServiceIP().String(); svc.Spec.ClusterIP != want {
			t.Errorf("kubernetes service ClusterIP %s, want %s", svc.Spec.ClusterIP, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("service default/kubernetes: %v", err)
	}
	if c.Admin.Host != c.URL {
		t.Errorf("Admin.Host %s, want %s", c.Admin.Host, c.URL)
	}
}

func testEncryptionAtRest(t *testing.T, c *Cluster, cs kubernetes.Interface) {
	ctx := ctxFor(t)
	const plaintext = "kubetest-canary-plaintext-4711"
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "enc-check", Namespace: "default"},
		StringData: map[string]string{"password": plaintext},
	}
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := cs.CoreV1().Secrets("default").Get(ctx, "enc-check", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data["password"]) != plaintext {
		t.Errorf("secret reads back %q, want %q", got.Data["password"], plaintext)
	}

	resp, err := c.Etcd.Get(ctx, "/registry/secrets/default/enc-check")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("etcd has %d values for the secret, want 1", len(resp.Kvs))
	}
	raw := resp.Kvs[0].Value
	if !bytes.HasPrefix(raw, []byte("k8s:enc:secretbox:v1:key1:")) {
		t.Errorf("stored secret starts with %q, want k8s:enc:secretbox:v1:key1:", raw[:min(len(raw), 40)])
	}
	if bytes.Contains(raw, []byte(plaintext)) {
		t.Error("stored secret contains the plaintext")
	}

	// Control: a ConfigMap is not encrypted, so reading etcd does show
	// plaintext, and the check above is not vacuous.
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "enc-control", Namespace: "default"},
		Data:       map[string]string{"k": plaintext},
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, err = c.Etcd.Get(ctx, "/registry/configmaps/default/enc-control")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || !bytes.Contains(resp.Kvs[0].Value, []byte(plaintext)) {
		t.Error("the unencrypted ConfigMap's plaintext was not found in etcd: the raw read is broken")
	}
}

func testAuthorization(t *testing.T, c *Cluster) {
	ctx := ctxFor(t)
	anon := mustClientset(t, c.AnonymousConfig())
	_, err := anon.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) && !apierrors.IsUnauthorized(err) {
		t.Errorf("anonymous list namespaces: %v, want 401 or 403", err)
	}
	// anonymous-auth=true is there for the health and version endpoints.
	if _, err := anon.Discovery().ServerVersion(); err != nil {
		t.Errorf("anonymous /version: %v, want it allowed", err)
	}
	if err := anon.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error(); err != nil {
		t.Errorf("anonymous /readyz: %v, want it allowed", err)
	}

	node := mustClientset(t, c.RestConfigFor(t, "system:node:n1", "system:nodes"))
	_, err = node.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("node n1 list secrets cluster-wide: %v, want 403", err)
	}
	// The node authorizer lets a node read its own Node object (there is
	// none: 404 rather than 403) and no other.
	if _, err := node.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("node n1 get node n1: %v, want 404 (authorized, absent)", err)
	}
	if _, err := node.CoreV1().Nodes().Get(ctx, "n2", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node n1 get node n2: %v, want 403", err)
	}

	nobody := mustClientset(t, c.RestConfigFor(t, "jane"))
	if _, err := nobody.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("user jane list secrets: %v, want 403", err)
	}

	if _, err := c.Clientset(t).CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("super-admin list secrets: %v", err)
	}
	masters := mustClientset(t, c.RestConfigFor(t, "ops", "system:masters"))
	if _, err := masters.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("system:masters certificate list secrets: %v", err)
	}
}

func mustClientset(t *testing.T, rc *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// auditEvent is the part of an audit.k8s.io/v1 Event the test reads.
type auditEvent struct {
	Verb      string                    `json:"verb"`
	Level     string                    `json:"level"`
	User      struct{ Username string } `json:"user"`
	ObjectRef *struct {
		Resource  string `json:"resource"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"objectRef"`
	RequestObject json.RawMessage `json:"requestObject"`
}

func testAuditLog(t *testing.T, c *Cluster, cs kubernetes.Interface) {
	ctx := ctxFor(t)
	const secretValue = "kubetest-audit-secret-value-0815"
	const cmValue = "kubetest-audit-configmap-value-0815"
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "audit-check", Namespace: "default"},
		StringData: map[string]string{"v": secretValue},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "audit-check", Namespace: "default"},
		Data:       map[string]string{"v": cmValue},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	path := c.Path(bootstrap.AuditLogFile)
	var secretEv, cmEv *auditEvent
	var data []byte
	err := poll(5*time.Second, func() error {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			var ev auditEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.ObjectRef == nil || ev.Verb != "create" ||
				ev.ObjectRef.Name != "audit-check" {
				continue
			}
			switch ev.ObjectRef.Resource {
			case "secrets":
				secretEv = &ev
			case "configmaps":
				cmEv = &ev
			}
		}
		if secretEv == nil || cmEv == nil {
			return errors.New("create events of secret and configmap audit-check not logged yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s (%d bytes): %v", path, len(data), err)
	}
	if secretEv.Level != "Metadata" || secretEv.User.Username != "kubernetes-super-admin" {
		t.Errorf("secret event level %s by %s, want Metadata by kubernetes-super-admin", secretEv.Level, secretEv.User.Username)
	}
	if bytes.Contains(data, []byte(secretValue)) {
		t.Error("the audit log contains a Secret's value")
	}
	if cmEv.Level != "RequestResponse" || !bytes.Contains(cmEv.RequestObject, []byte(cmValue)) {
		t.Errorf("configmap event level %s, request %s; want RequestResponse with the body", cmEv.Level, cmEv.RequestObject)
	}
}

func testStop(t *testing.T, c *Cluster) {
	pid := c.proc.cmd.Process.Pid
	c.Stop()
	c.Stop() // idempotent
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d after Stop: kill -0 says %v, want ESRCH", pid, err)
	}
	if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(c.URL, "https://"), time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Stop", c.URL)
	}
	if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(c.EtcdURL, "https://"), time.Second); err == nil {
		conn.Close()
		t.Errorf("etcd %s still accepts connections after Stop", c.EtcdURL)
	}
}

// The flags handed to kube-apiserver are the agent's, with only the
// loopback overrides and every logical path mapped under the root.
func TestAPIServerFlagsMapped(t *testing.T) {
	cfg := mustParse(t)
	root := t.TempDir()
	c := &Cluster{Config: cfg, EtcdURL: "https://127.0.0.1:1"}
	c.Root = mustRoot(t, root)
	got := c.apiServerFlags()
	want := bootstrap.APIServerFlags(cfg, []string{"x"})
	if len(got) != len(want)+1 || got["endpoint-reconciler-type"] != "none" {
		t.Errorf("%d flags, want the agent's %d", len(got), len(want))
	}
	overridden := []string{"endpoint-reconciler-type", "etcd-servers", "secure-port", "advertise-address", "bind-address"}
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("--%s dropped", k)
		case slices.Contains(overridden, k):
		case strings.HasPrefix(v, "/"):
			if g != c.Root.Path(v) {
				t.Errorf("--%s=%s, want %s under the root", k, g, v)
			}
		case g != v:
			t.Errorf("--%s=%s, want the agent's %s", k, g, v)
		}
	}
	for _, v := range got {
		if strings.HasPrefix(v, "/") && !strings.HasPrefix(v, root) {
			t.Errorf("flag value %s is outside the root", v)
		}
	}
	if got["bind-address"] != "127.0.0.1" || got["etcd-servers"] != c.EtcdURL {
		t.Errorf("bind-address %s, etcd-servers %s", got["bind-address"], got["etcd-servers"])
	}
}

// Start skips, with a message naming the missing binary, when there is
// no kube-apiserver.
func TestSkipWithoutBinary(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvBinDir, dir)
	var sub *testing.T
	t.Run("start", func(t *testing.T) {
		sub = t
		Start(t)
		t.Error("Start returned without a binary")
	})
	if !sub.Skipped() {
		t.Error("Start did not skip without a binary")
	}
}

func mustParse(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(BaseConfig), "kubetest.toml", config.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.AdvertiseAddress = Loopback
	return cfg
}

func mustRoot(t *testing.T, dir string) *hostfs.Root {
	t.Helper()
	r, err := hostfs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Every kubeconfig the renderer wrote reaches the API server and
// authenticates as the user it names.
func testKubeconfigs(t *testing.T, c *Cluster) {
	ctx := ctxFor(t)
	n := 0
	for _, w := range c.Written {
		if !strings.HasPrefix(w.Path, bootstrap.KubernetesDir+"/") || !strings.HasSuffix(w.Path, ".conf") {
			continue
		}
		n++
		data, err := c.Root.ReadFile(w.Path)
		if err != nil {
			t.Fatal(err)
		}
		kc, err := clientcmd.Load(data)
		if err != nil {
			t.Fatalf("%s: %v", w.Path, err)
		}
		want := kc.Contexts[kc.CurrentContext].AuthInfo
		cs := mustClientset(t, c.KubeconfigConfig(t, w.Path))
		r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
		if err != nil {
			t.Errorf("%s: %v", w.Path, err)
			continue
		}
		if got := r.Status.UserInfo.Username; got != want {
			t.Errorf("%s authenticates as %q, want %q", w.Path, got, want)
		}
		t.Logf("%s: %s %v", w.Path, r.Status.UserInfo.Username, r.Status.UserInfo.Groups)
	}
	if n < 5 {
		t.Errorf("%d kubeconfigs rendered, want at least admin, super-admin, controller-manager, scheduler and kubelet", n)
	}
}
