package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
)

// fakeExec records the host programs the agent runs; commands whose
// joined arguments start with a prefix in fail exit non-zero.
type fakeExec struct {
	mu   sync.Mutex
	ran  []string
	fail []string
}

func (f *fakeExec) Output(_ context.Context, name string, args ...string) ([]byte, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ran = append(f.ran, line)
	for _, p := range f.fail {
		if strings.HasPrefix(line, p) {
			return nil, fmt.Errorf("exit status 1: %s", line)
		}
	}
	return nil, nil
}

func (f *fakeExec) lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.ran)
	f.ran = nil
	return out
}

// report is the node side's part of the status.
func report(n *Node) status.NodeStatus {
	var s status.Status
	n.Report(&s)
	if s.Kubelet == nil {
		return status.NodeStatus{}
	}
	return *s.Kubelet
}

func testNode(name, podCIDR, ip string, ready bool) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDR: podCIDR},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st, Reason: "KubeletNotReady", Message: "cni plugin not initialized"}},
		},
	}
}

// TestNodeNetwork: the pod network follows the Nodes: the CNI config for
// this node's pod CIDR, a route per other node's pod CIDR through its
// address, one masquerade rule; a node that goes takes its route along;
// nothing is run again when nothing changed.
func TestNodeNetwork(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	cfg.Role = "worker"
	root := configtest.Root(t)
	ex := &fakeExec{}
	store := nodestate.NewStore(root, &nodestate.State{NodeUnits: true}, nil)
	n := New(Deps{Config: cfg, Root: root, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: store, Run: ex})
	cs := fake.NewClientset(
		testNode(cfg.NodeName, "", "10.77.0.11", false),
		testNode("cp-2", "10.244.1.0/24", "10.77.0.12", true),
	)
	n.cs = cs
	ctx := context.Background()

	// No pod CIDR yet: routes to the others, no CNI config.
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := root.Exists(bootstrap.CNIConfFile); ok {
		t.Error("CNI config written before the node has a pod CIDR")
	}
	if got, want := ex.lines(), []string{"ip route replace 10.244.1.0/24 via 10.77.0.12"}; !slices.Equal(got, want) {
		t.Errorf("ran %q, want %q", got, want)
	}
	st := report(n)
	if st.Ready || !strings.Contains(st.Reason, "cni plugin not initialized") {
		t.Errorf("status %+v", st)
	}

	// The controller manager allocates this node's range.
	self, _ := cs.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{})
	self.Spec.PodCIDR = "10.244.0.0/24"
	if _, err := cs.CoreV1().Nodes().Update(ctx, self, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := root.ReadFile(bootstrap.CNIConfFile)
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Plugins []struct {
			Type string
			IPAM struct{ Ranges [][]map[string]string }
		}
	}
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Plugins[0].Type != "bridge" || conf.Plugins[0].IPAM.Ranges[0][0]["subnet"] != "10.244.0.0/24" {
		t.Errorf("CNI config:\n%s", data)
	}
	ran := ex.lines()
	if len(ran) != 1 || !strings.HasPrefix(ran[0], "iptables -w 5 -t nat -C POSTROUTING -s 10.244.0.0/24 ! -d 10.244.0.0/16") {
		t.Errorf("ran %q, want the masquerade rule checked only (it exists)", ran)
	}

	// Nothing changed: nothing runs.
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if ran := ex.lines(); len(ran) != 0 {
		t.Errorf("ran %q with nothing changed", ran)
	}

	// cp-2 leaves, cp-3 comes: its route replaces cp-2's.
	if err := cs.CoreV1().Nodes().Delete(ctx, "cp-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, testNode("cp-3", "10.244.2.0/24", "10.77.0.13", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := ex.lines(), []string{"ip route replace 10.244.2.0/24 via 10.77.0.13", "ip route del 10.244.1.0/24"}; !slices.Equal(got, want) {
		t.Errorf("ran %q, want %q", got, want)
	}
	if st := report(n); !slices.Equal(st.Routes, []string{"10.244.2.0/24 via 10.77.0.13"}) || st.PodCIDR != "10.244.0.0/24" {
		t.Errorf("status %+v", st)
	}

	// A route that fails is reported and retried.
	ex.fail = []string{"ip route replace 10.244.3.0/24"}
	if _, err := cs.CoreV1().Nodes().Create(ctx, testNode("w-9", "10.244.3.0/24", "10.77.0.19", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := n.network(ctx); err == nil || !strings.Contains(err.Error(), "route 10.244.3.0/24 via 10.77.0.19") {
		t.Errorf("error %v, want the failed route named", err)
	}
	ex.lines()
	ex.fail = nil
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ex.lines(); !slices.Equal(got, []string{"ip route replace 10.244.3.0/24 via 10.77.0.19"}) {
		t.Errorf("retry ran %q", got)
	}
}

// servingCSR builds a kubelet-serving request as a kubelet sends it.
func servingCSR(t *testing.T, user, cn string, dns []string, ips []string) *certv1.CertificateSigningRequest {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: []string{"system:nodes"}}, DNSNames: dns}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-" + cn},
		Spec: certv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: certv1.KubeletServingSignerName,
			Username:   user,
			Groups:     []string{"system:nodes", "system:authenticated"},
			Usages:     []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth},
		},
	}
}

func TestCheckServingCSR(t *testing.T) {
	w1 := testNode("w-1", "10.244.3.0/24", "10.77.0.21", true)
	// A compromised node may write any address on its own Node.
	for _, a := range []string{"10.96.0.1", "127.0.0.1", "10.77.0.11"} {
		w1.Status.Addresses = append(w1.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	w1.Status.Addresses = append(w1.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "kubernetes.default.svc"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "localhost"})
	nodes := []corev1.Node{*w1}
	policy := servingPolicy{serviceCIDR: netip.MustParsePrefix("10.96.0.0/12"), clusterDomain: "cluster.local"}
	gossip := map[string]netip.Addr{"w-1": netip.MustParseAddr("10.77.0.21")}
	for _, tc := range []struct {
		name   string
		csr    *certv1.CertificateSigningRequest
		gossip map[string]netip.Addr
		want   string // "" approves
	}{
		{"the node's own", servingCSR(t, "system:node:w-1", "system:node:w-1", []string{"w-1"}, []string{"10.77.0.21"}), gossip, ""},
		{"not a node", servingCSR(t, "alice", "system:node:w-1", nil, nil), gossip, `requested by "alice"`},
		{"for another node", servingCSR(t, "system:node:w-1", "system:node:w-2", nil, nil), gossip, "not for system:node:w-1"},
		{"a foreign name", servingCSR(t, "system:node:w-1", "system:node:w-1", []string{"shop.example"}, nil), gossip, `DNS name "shop.example"`},
		{"a foreign address", servingCSR(t, "system:node:w-1", "system:node:w-1", nil, []string{"10.77.0.99"}), gossip, "address 10.77.0.99"},
		{"no such Node", servingCSR(t, "system:node:w-7", "system:node:w-7", nil, nil), gossip, "no Node w-7"},
		{"gossip elsewhere", servingCSR(t, "system:node:w-1", "system:node:w-1", nil, nil),
			map[string]netip.Addr{"w-1": netip.MustParseAddr("10.77.0.50")}, "not in the gossip view"},
		{"the API server's service IP", servingCSR(t, "system:node:w-1", "system:node:w-1", nil, []string{"10.77.0.21", "10.96.0.1"}), gossip, "a cluster service address"},
		{"loopback", servingCSR(t, "system:node:w-1", "system:node:w-1", nil, []string{"127.0.0.1"}), gossip, "a loopback address"},
		{"a control-plane node's address on its Node", servingCSR(t, "system:node:w-1", "system:node:w-1", nil, []string{"10.77.0.11"}), gossip, "it gossips from 10.77.0.21"},
		{"the API server's service name", servingCSR(t, "system:node:w-1", "system:node:w-1", []string{"kubernetes.default.svc"}, nil), gossip, "the API server's service name"},
		{"localhost", servingCSR(t, "system:node:w-1", "system:node:w-1", []string{"localhost"}, nil), gossip, "a loopback name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkServingCSR(tc.csr, nodes, tc.gossip, policy)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	// A client-auth usage on a serving request is refused.
	c := servingCSR(t, "system:node:w-1", "system:node:w-1", nil, nil)
	c.Spec.Usages = append(c.Spec.Usages, certv1.UsageClientAuth)
	if err := checkServingCSR(c, nodes, gossip, policy); err == nil || !strings.Contains(err.Error(), `usage "client auth"`) {
		t.Errorf("client auth: %v", err)
	}
}
