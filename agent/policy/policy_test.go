package policy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/netpol"
	"github.com/ecom-platform/ecom-agent/status"
)

const hooked = `*filter
:INPUT ACCEPT [0:0]
:KUBE-NWPLCY-DEFAULT - [0:0]
:KUBE-NWPLCY-AAAA - [0:0]
:KUBE-NWPLCY-BBBB - [0:0]
:KUBE-POD-FW-CCCC - [0:0]
-A INPUT -m comment --comment "kube-router netpol - 4IA2OSFRMVNDXBVV" -j KUBE-ROUTER-INPUT
-A FORWARD -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" -j KUBE-ROUTER-FORWARD
-A OUTPUT -m comment --comment "kube-router netpol - VEAAIY32XVBHCSCY" -j KUBE-ROUTER-OUTPUT
COMMIT
`

// host answers iptables-save with table and fails the programs in broken.
type host struct {
	mu     sync.Mutex
	table  string
	broken string
	ran    []string
}

func (h *host) Output(_ context.Context, name string, args ...string) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ran = append(h.ran, name+" "+strings.Join(args, " "))
	if name == h.broken {
		return nil, errors.New("exec: \"" + name + "\": executable file not found in $PATH")
	}
	if name == "iptables-save" {
		return []byte(h.table), nil
	}
	return nil, nil
}

type engine struct {
	resyncs, stops int
	failed         bool
}

func (e *engine) LastSync() time.Time            { return time.Unix(1800000000, 0) }
func (e *engine) Resync()                        { e.resyncs++ }
func (e *engine) Failed() bool                   { return e.failed }
func (e *engine) Stop(ctx context.Context) error { e.stops++; return nil }

type fixture struct {
	p       *Policy
	h       *host
	e       *engine
	cs      *fake.Clientset
	now     time.Time
	started []netpol.Settings
}

func newFixture(t *testing.T, on bool) *fixture {
	f := &fixture{h: &host{}, e: &engine{}, cs: fake.NewClientset(), now: time.Unix(1800000000, 0)}
	cfg := &config.Config{NodeName: "w1", Network: config.Network{Policy: on, ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12")}}
	f.p = New(Deps{
		Config: cfg, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Run: f.h,
		Client: func() (kubernetes.Interface, error) { return f.cs, nil },
		Start: func(_ context.Context, _ kubernetes.Interface, s netpol.Settings) (netpol.Engine, error) {
			f.started = append(f.started, s)
			return f.e, nil
		},
		Now: func() time.Time { return f.now },
	})
	return f
}

func (f *fixture) report() *status.NetworkPolicyStatus {
	var s status.Status
	f.p.Report(&s)
	return s.NetworkPolicy
}

func TestStartsOnceTheNodeIsRegisteredAndReportsTheKernel(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	err := f.p.Step(ctx)
	if err == nil || !strings.Contains(err.Error(), "waiting for the kubelet to register Node w1") || len(f.started) != 0 {
		t.Fatalf("before the Node: err %v, started %v", err, f.started)
	}
	if r := f.report(); r == nil || r.Enforcing || r.Error == "" {
		t.Fatalf("before the Node, status %+v", r)
	}
	if _, err := f.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// ipset missing: the engine would end the process; it is not started.
	f.h.broken = "ipset"
	if err := f.p.Step(ctx); err == nil || !strings.Contains(err.Error(), "install the iptables and ipset packages") || len(f.started) != 0 {
		t.Fatalf("without ipset: err %v, started %v", err, f.started)
	}
	f.h.broken = ""

	f.h.table = hooked
	if err := f.p.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.started) != 1 || f.started[0].NodeName != "w1" || f.started[0].ServiceCIDR.String() != "10.96.0.0/12" {
		t.Fatalf("started %+v", f.started)
	}
	r := f.report()
	if r == nil || !r.Enforcing || r.PolicyChains != 2 || r.PodChains != 1 || r.Error != "" || r.Engine != netpol.EngineName {
		t.Fatalf("status %+v", r)
	}
	if err := f.p.Step(ctx); err != nil || len(f.started) != 1 {
		t.Fatalf("a second step: %v, started %d times", err, len(f.started))
	}
	if err := f.p.Stop(ctx); err != nil || f.e.stops != 1 {
		t.Fatalf("stop: %v, %d", err, f.e.stops)
	}
}

// A hook removed from the kernel (an operator's `iptables -F FORWARD`):
// within the first sync's grace it is the first sync; after it the node
// is reported not enforcing and the engine is asked for a full sync.
func TestAMissingHookAsksForASync(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	f.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}}, metav1.CreateOptions{})
	f.h.table = "*filter\nCOMMIT\n"
	if err := f.p.Step(ctx); err == nil || !strings.Contains(err.Error(), "yet (its first sync runs)") || f.e.resyncs != 0 {
		t.Fatalf("first step: %v, resyncs %d", err, f.e.resyncs)
	}
	f.now = f.now.Add(firstSyncGrace)
	f.h.table = strings.Replace(hooked, `-A FORWARD -m comment --comment "kube-router netpol - TEMCG2JMHZYE7H7T" -j KUBE-ROUTER-FORWARD`, "", 1)
	err := f.p.Step(ctx)
	if err == nil || !strings.Contains(err.Error(), "FORWARD do not jump") || f.e.resyncs != 1 {
		t.Fatalf("hook missing: %v, resyncs %d", err, f.e.resyncs)
	}
	if r := f.report(); r.Enforcing || !strings.Contains(r.Error, "FORWARD") {
		t.Fatalf("status %+v", r)
	}
	var s status.Status
	f.p.Report(&s)
	s.Judge(false)
	if s.Verdict != status.Degraded || !slices.ContainsFunc(s.Reasons, func(r string) bool { return strings.HasPrefix(r, "network policy is not enforced") }) {
		t.Fatalf("verdict %s %q", s.Verdict, s.Reasons)
	}
	f.h.table = hooked
	if err := f.p.Step(ctx); err != nil || !f.report().Enforcing {
		t.Fatalf("back: %v %+v", err, f.report())
	}
}

// network.policy = false: the engine's rules are removed once, nothing
// starts, and the status says policy is off.
func TestOffRemovesTheEnginesRulesOnce(t *testing.T) {
	f := newFixture(t, false)
	f.h.table = hooked
	ctx := context.Background()
	if err := f.p.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.started) != 0 || !slices.Contains(f.h.ran, "ipset list -n") {
		t.Fatalf("started %v, ran %q", f.started, f.h.ran)
	}
	if r := f.report(); r == nil || !r.Off {
		t.Fatalf("status %+v", r)
	}
	n := len(f.h.ran)
	if err := f.p.Step(ctx); err != nil || len(f.h.ran) != n {
		t.Fatalf("a second step ran %q (%v)", f.h.ran[n:], err)
	}
}

// An engine that stopped on a fatal error (kube-router's klog.Fatal, which
// no longer ends the agent) is stopped and a new one started.
func TestAFailedEngineIsStartedAgain(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	f.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}}, metav1.CreateOptions{})
	f.h.table = hooked
	if err := f.p.Step(ctx); err != nil || len(f.started) != 1 {
		t.Fatalf("first step: %v, started %d", err, len(f.started))
	}
	f.e.failed = true
	if err := f.p.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.started) != 2 || f.e.stops != 1 {
		t.Fatalf("after a failure: started %d times, stopped %d", len(f.started), f.e.stops)
	}
}
