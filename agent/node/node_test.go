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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ecom-platform/ecom-agent/apilb"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
)

// fakeExec records the host programs the agent runs and never runs one.
// A command whose line (name and arguments joined by spaces) starts with
// a key of fail exits non-zero: its error carries the command and the
// key's stderr, as units.ExecRunner's carries the stderr.
//
// It keeps the kernel's routing table as `ip route replace` and `ip route
// del` leave it, answers `ip -4 -json route show` from it (a read, not
// recorded in ran), and a test can empty it as a link going down does.
type fakeExec struct {
	mu     sync.Mutex
	ran    []string
	fail   map[string]string // command line prefix -> stderr
	routes map[string]string // destination -> gateway
	// vxlan is the VXLAN device (nil: none), see podnet_test.go.
	vxlan *fakeVXLAN
}

func (f *fakeExec) Output(_ context.Context, name string, args ...string) ([]byte, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	f.mu.Lock()
	defer f.mu.Unlock()
	// Reads (the route table, the devices and their entries, the
	// masquerade rule's check) are not recorded: they run on every step.
	read := strings.Contains(line, " show") || strings.Contains(line, " -t nat -C ")
	if !read {
		f.ran = append(f.ran, line)
	}
	for p, stderr := range f.fail {
		if strings.HasPrefix(line, p) {
			return nil, fmt.Errorf("exit status 1: %s: %s", line, stderr)
		}
	}
	if f.routes == nil {
		f.routes = map[string]string{}
	}
	if out, err, ok := f.vxlanCommand(line, args); ok {
		return out, err
	}
	switch {
	case strings.HasPrefix(line, "ip -4 -json route show"):
		type route struct {
			Dst     string `json:"dst"`
			Gateway string `json:"gateway,omitempty"`
		}
		list := []route{{Dst: "default", Gateway: "10.77.0.1"}, {Dst: "10.77.0.0/24"}}
		for dst, gw := range f.routes {
			list = append(list, route{dst, gw})
		}
		return json.Marshal(list)
	case len(args) >= 5 && args[0] == "route" && args[1] == "replace":
		f.routes[args[2]] = args[4]
	case len(args) == 3 && args[0] == "route" && args[1] == "del":
		delete(f.routes, args[2])
	}
	return nil, nil
}

// linkDown empties the routing table of the routes through other nodes,
// as a link going down does.
func (f *fakeExec) linkDown() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes = nil
}

// failing sets the commands that fail from now on (none if nil).
func (f *fakeExec) failing(fail map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
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
	if ran := ex.lines(); len(ran) != 0 {
		t.Errorf("ran %q, want the masquerade rule only checked (it exists)", ran)
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
	ex.failing(map[string]string{"ip route replace 10.244.3.0/24": "Error: Nexthop has invalid gateway."})
	if _, err := cs.CoreV1().Nodes().Create(ctx, testNode("w-9", "10.244.3.0/24", "10.77.0.19", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := n.network(ctx); err == nil || !strings.Contains(err.Error(), "route 10.244.3.0/24 via 10.77.0.19") {
		t.Errorf("error %v, want the failed route named", err)
	}
	if got := ex.lines(); !slices.Contains(got, "ip route replace 10.244.3.0/24 via 10.77.0.19") {
		t.Errorf("ran %q, want the route tried", got)
	}
	ex.failing(nil)
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

// masqueradeRule is the iptables command line of the rule for this
// node's pod range, with op -C (check) or -A (append).
func masqueradeRule(op, podCIDR string) string {
	return strings.Join(append([]string{"iptables", "-w", "5", "-t", "nat", op}, bootstrap.MasqueradeRule(podCIDR, "10.244.0.0/16")...), " ")
}

// networkNode is the node side of worker w-1 reading the Nodes from a
// fake clientset, with the host programs it runs recorded.
func networkNode(t *testing.T, nodes ...*corev1.Node) (*Node, *fakeExec, *fake.Clientset) {
	t.Helper()
	cfg := configtest.Worker(t)
	root := configtest.Root(t)
	ex := &fakeExec{}
	store := nodestate.NewStore(root, &nodestate.State{NodeUnits: true}, nil)
	n := New(Deps{Config: cfg, Root: root, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: store, Run: ex})
	var objs []runtime.Object
	for _, nd := range nodes {
		objs = append(objs, nd)
	}
	cs := fake.NewClientset(objs...)
	n.cs = cs
	return n, ex, cs
}

// The masquerade rule is appended when the check says it is missing; an
// append that fails is an error and is tried again on the next step; it
// is checked on every step, so a rule flushed by hand comes back.
func TestNodeNetworkAddsTheMasqueradeRule(t *testing.T) {
	n, ex, _ := networkNode(t, testNode("w-1", "10.244.5.0/24", "10.77.0.21", true))
	ctx := context.Background()
	check, add := masqueradeRule("-C", "10.244.5.0/24"), masqueradeRule("-A", "10.244.5.0/24")

	ex.failing(map[string]string{
		check: "iptables: Bad rule (does a matching rule exist in that chain?).",
		add:   "iptables v1.8.10 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)",
	})
	err := n.network(ctx)
	if err == nil || !strings.Contains(err.Error(), "masquerade pod traffic") || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("error %v, want the failed append with iptables' stderr", err)
	}
	if got, want := ex.lines(), []string{add}; !slices.Equal(got, want) {
		t.Errorf("ran %q, want %q", got, want)
	}
	// The pod network's config does not wait for the rule.
	if ok, _ := n.d.Root.Exists(bootstrap.CNIConfFile); !ok {
		t.Error("no CNI config written")
	}

	// The rule is still missing; the append works now.
	ex.failing(map[string]string{check: "iptables: Bad rule (does a matching rule exist in that chain?)."})
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := ex.lines(), []string{add}; !slices.Equal(got, want) {
		t.Errorf("retry ran %q, want %q", got, want)
	}

	ex.failing(nil)
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ex.lines(); len(got) != 0 {
		t.Errorf("ran %q with the rule in place", got)
	}

	// An operator's `iptables -t nat -F`: the next step puts it back.
	ex.failing(map[string]string{check: "iptables: Bad rule (does a matching rule exist in that chain?)."})
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := ex.lines(), []string{add}; !slices.Equal(got, want) {
		t.Errorf("after a flush ran %q, want %q", got, want)
	}
}

// A route whose removal fails is an error and is removed on the next
// step; one the kernel no longer has ("No such process") counts as
// removed.
func TestNodeNetworkRemovesRoutes(t *testing.T) {
	n, ex, cs := networkNode(t,
		testNode("w-1", "10.244.5.0/24", "10.77.0.21", true),
		testNode("cp-2", "10.244.1.0/24", "10.77.0.12", true),
		testNode("cp-3", "10.244.2.0/24", "10.77.0.13", true),
	)
	ctx := context.Background()
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	got := ex.lines()
	slices.Sort(got)
	if want := []string{
		"ip route replace 10.244.1.0/24 via 10.77.0.12",
		"ip route replace 10.244.2.0/24 via 10.77.0.13",
	}; !slices.Equal(got, want) {
		t.Errorf("ran %q, want %q", got, want)
	}

	for _, name := range []string{"cp-2", "cp-3"} {
		if err := cs.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ex.failing(map[string]string{
		"ip route del 10.244.1.0/24": "RTNETLINK answers: No such process",
		"ip route del 10.244.2.0/24": "RTNETLINK answers: Operation not permitted",
	})
	err := n.network(ctx)
	if err == nil || !strings.Contains(err.Error(), "remove route 10.244.2.0/24") || strings.Contains(err.Error(), "10.244.1.0/24") {
		t.Errorf("error %v, want the route to 10.244.2.0/24 only named", err)
	}
	got = ex.lines()
	slices.Sort(got)
	if want := []string{"ip route del 10.244.1.0/24", "ip route del 10.244.2.0/24"}; !slices.Equal(got, want) {
		t.Errorf("ran %q, want %q", got, want)
	}
	if st := report(n); len(st.Routes) != 0 {
		t.Errorf("status routes %q with no other node", st.Routes)
	}

	ex.failing(nil)
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := ex.lines(), []string{"ip route del 10.244.2.0/24"}; !slices.Equal(got, want) {
		t.Errorf("retry ran %q, want %q", got, want)
	}
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ex.lines(); len(got) != 0 {
		t.Errorf("ran %q with nothing changed", got)
	}
}

// The node side says nothing in the status until its units are
// installed; then it reports the kubelet's state and a worker's API load
// balancer.
func TestReportWaitsForTheNodeUnits(t *testing.T) {
	cfg := configtest.Worker(t)
	root := configtest.Root(t)
	store := nodestate.NewStore(root, &nodestate.State{}, nil)
	lb := []apilb.EndpointStatus{{Address: "10.77.0.11:6443", Healthy: true}}
	n := New(Deps{Config: cfg, Root: root, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: store, Run: &fakeExec{},
		LoadBalancer: func() []apilb.EndpointStatus { return lb }})
	var s status.Status
	n.Report(&s)
	if s.Kubelet != nil {
		t.Errorf("reported %+v before the node units are installed", *s.Kubelet)
	}
	if err := store.Update(func(s *nodestate.State) error { s.NodeUnits = true; return nil }); err != nil {
		t.Fatal(err)
	}
	st := report(n)
	if st.KubeletStarted || st.Reason != "the kubelet is not started yet" || !slices.Equal(st.APILoadBalancer, lb) {
		t.Errorf("status %+v", st)
	}
}

// On a control-plane node, a step approves the kubelets' serving
// certificates that check out and leaves the others pending, logged
// once; requests already decided and other signers' are left alone.
func TestNodeNetworkApprovesServingCSRs(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	root := configtest.Root(t)
	var logs strings.Builder
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	members := []gossip.Member{{Name: "w-1", Addr: netip.MustParseAddrPort("10.77.0.21:7946"), State: gossip.StateAlive}}
	n := New(Deps{Config: cfg, Root: root, Log: log, Store: nodestate.NewStore(root, &nodestate.State{NodeUnits: true}, nil),
		Run: &fakeExec{}, Members: func() []gossip.Member { return members }})
	good := servingCSR(t, "system:node:w-1", "system:node:w-1", []string{"w-1"}, []string{"10.77.0.21"})
	bad := servingCSR(t, "system:node:w-1", "system:node:w-1", []string{"kubernetes.default"}, nil)
	bad.Name = "csr-bad"
	denied := servingCSR(t, "system:node:w-1", "system:node:w-1", nil, nil)
	denied.Name = "csr-denied"
	denied.Status.Conditions = []certv1.CertificateSigningRequestCondition{{Type: certv1.CertificateDenied, Status: corev1.ConditionTrue}}
	client := servingCSR(t, "system:node:w-1", "system:node:w-1", nil, nil)
	client.Name, client.Spec.SignerName = "csr-client", certv1.KubeAPIServerClientKubeletSignerName
	// The kubelet of this node has not registered yet: the approvals do
	// not wait for it.
	cs := fake.NewClientset(testNode("w-1", "10.244.3.0/24", "10.77.0.21", true), good, bad, denied, client)
	n.cs = cs
	ctx := context.Background()
	for range 2 {
		if err := n.network(ctx); err != nil {
			t.Fatal(err)
		}
	}
	decided := func(name string) []certv1.CertificateSigningRequestCondition {
		t.Helper()
		c, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Status.Conditions
	}
	if c := decided(good.Name); len(c) != 1 || c[0].Type != certv1.CertificateApproved || c[0].Status != corev1.ConditionTrue {
		t.Errorf("%s: conditions %+v, want approved", good.Name, c)
	}
	if c := decided(bad.Name); len(c) != 0 {
		t.Errorf("%s: conditions %+v, want pending", bad.Name, c)
	}
	if c := decided(denied.Name); len(c) != 1 || c[0].Type != certv1.CertificateDenied {
		t.Errorf("%s: conditions %+v, want denied only", denied.Name, c)
	}
	if c := decided(client.Name); len(c) != 0 {
		t.Errorf("%s: conditions %+v, want another signer's left alone", client.Name, c)
	}
	logMu.Lock()
	text := logs.String()
	logMu.Unlock()
	if got := strings.Count(text, "left a kubelet serving-certificate request pending"); got != 1 || !strings.Contains(text, "csr=csr-bad") {
		t.Errorf("logged the refusal %d times, want once for csr-bad:\n%s", got, text)
	}
	if st := report(n); st.Ready || st.Reason != "the kubelet has not registered the Node yet" {
		t.Errorf("status %+v", st)
	}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A link that went down and up took the routes to the other nodes' pods
// out of the kernel's table, and an operator deleted one by hand: the next
// step puts back exactly those, and a step with the table intact runs
// nothing.
func TestNodeNetworkRestoresLostRoutes(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	cfg.Role = "worker"
	root := configtest.Root(t)
	ex := &fakeExec{}
	store := nodestate.NewStore(root, &nodestate.State{NodeUnits: true}, nil)
	n := New(Deps{Config: cfg, Root: root, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: store, Run: ex})
	n.cs = fake.NewClientset(
		testNode(cfg.NodeName, "10.244.0.0/24", "10.77.0.11", true),
		testNode("cp-2", "10.244.1.0/24", "10.77.0.12", true),
		testNode("cp-3", "10.244.2.0/24", "10.77.0.13", true),
	)
	ctx := context.Background()
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	ex.lines()
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ex.lines(); len(got) != 0 {
		t.Errorf("ran %q with every route in place", got)
	}

	ex.linkDown()
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	got := ex.lines()
	slices.Sort(got)
	if want := []string{"ip route replace 10.244.1.0/24 via 10.77.0.12", "ip route replace 10.244.2.0/24 via 10.77.0.13"}; !slices.Equal(got, want) {
		t.Errorf("after the link flap ran %q, want %q", got, want)
	}

	ex.mu.Lock()
	delete(ex.routes, "10.244.2.0/24")
	ex.mu.Unlock()
	if err := n.network(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := ex.lines(), []string{"ip route replace 10.244.2.0/24 via 10.77.0.13"}; !slices.Equal(got, want) {
		t.Errorf("after a route deleted by hand ran %q, want %q", got, want)
	}

	// A table that cannot be read is an error (the status degrades), and
	// the routes are written again meanwhile.
	ex.failing(map[string]string{"ip -4 -json route show": "Cannot open netlink socket"})
	err := n.network(ctx)
	if err == nil || !strings.Contains(err.Error(), "read the routes") {
		t.Errorf("error %v, want the unread table named", err)
	}
	if got := ex.lines(); len(got) != 2 {
		t.Errorf("ran %q, want both routes written again", got)
	}
}
