package nodecheck

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const sockPath = "/run/containerd/containerd.sock"

// fakeCRI is a CRI v1 RuntimeService answering Version, Status and, when
// hasRuntimeConfig, RuntimeConfig.
type fakeCRI struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	name, version    string
	ready            *runtimeapi.RuntimeCondition // nil: no RuntimeReady condition
	network          *runtimeapi.RuntimeCondition
	hasRuntimeConfig bool
}

func (f *fakeCRI) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{Version: "0.1.0", RuntimeName: f.name, RuntimeVersion: f.version, RuntimeApiVersion: "v1"}, nil
}

func (f *fakeCRI) Status(context.Context, *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	var conds []*runtimeapi.RuntimeCondition
	for _, c := range []*runtimeapi.RuntimeCondition{f.ready, f.network} {
		if c != nil {
			conds = append(conds, c)
		}
	}
	return &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{Conditions: conds}}, nil
}

func (f *fakeCRI) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	if !f.hasRuntimeConfig {
		return nil, status.Error(codes.Unimplemented, "method RuntimeConfig not implemented")
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: runtimeapi.CgroupDriver_SYSTEMD}}, nil
}

// containerd2 is containerd 2.x on a node without a CNI yet.
func containerd2() *fakeCRI {
	return &fakeCRI{
		name: "containerd", version: "v2.4.2",
		ready:            &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true},
		network:          &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Reason: "NetworkPluginNotReady", Message: "Network plugin returns error: cni plugin not initialized"},
		hasRuntimeConfig: true,
	}
}

// listenSock listens on the CRI socket under a new host root.
func listenSock(t *testing.T) (string, *net.UnixListener) {
	t.Helper()
	root := t.TempDir()
	p := filepath.Join(root, sockPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	return root, l
}

// serveCRI serves srv (nil: a gRPC server without the RuntimeService)
// on the CRI socket under a new host root and returns the root.
func serveCRI(t *testing.T, srv runtimeapi.RuntimeServiceServer) string {
	t.Helper()
	root, l := listenSock(t)
	s := grpc.NewServer()
	if srv != nil {
		runtimeapi.RegisterRuntimeServiceServer(s, srv)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(l)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return root
}

func criOpts(root string) Options {
	return Options{Root: root, CRIEndpoint: "unix://" + sockPath, Timeout: 30 * time.Second}
}

func TestCRIReady(t *testing.T) {
	root := serveCRI(t, containerd2())
	rt, got := CRI(context.Background(), criOpts(root))
	wantFailures(t, got)
	if rt == nil {
		t.Fatal("no runtime info")
	}
	if rt.Name != "containerd" || rt.Version != "v2.4.2" || rt.APIVersion != "v1" || rt.CgroupDriver != "systemd" || rt.NetworkReady {
		t.Errorf("runtime %+v", rt)
	}
	if want := "containerd v2.4.2 (CRI v1) at unix:///run/containerd/containerd.sock, cgroup driver systemd, " +
		"network not ready (NetworkPluginNotReady: Network plugin returns error: cni plugin not initialized; expected until a CNI is configured)"; rt.String() != want {
		t.Errorf("String:\n got  %q\n want %q", rt.String(), want)
	}

	// Run carries it: NetworkReady false is shown, not failed.
	o := criOpts(root)
	r := Run(context.Background(), o)
	if r.Runtime == nil || r.Runtime.NetworkReason != "NetworkPluginNotReady" {
		t.Errorf("Run's runtime: %v", r.Runtime)
	}
	for _, f := range r.Failures {
		if f.Check == "cri" {
			t.Errorf("Run: %v", f)
		}
	}
}

func TestCRINotReady(t *testing.T) {
	f := containerd2()
	f.ready = &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Reason: "ContainerdNotReady", Message: "snapshotter overlayfs failed to load"}
	_, got := CRI(context.Background(), criOpts(serveCRI(t, f)))
	wantFailures(t, got,
		"cri: containerd v2.4.2 is not ready: RuntimeReady is false (ContainerdNotReady: snapshotter overlayfs failed to load); "+
			"fix: `journalctl -u containerd` says why; then `systemctl restart containerd`")

	f.ready = nil
	_, got = CRI(context.Background(), criOpts(serveCRI(t, f)))
	wantFailures(t, got,
		"cri: containerd v2.4.2 is not ready: it reports no RuntimeReady condition; "+
			"fix: `journalctl -u containerd` says why; then `systemctl restart containerd`")
}

// Debian 12's containerd 1.6 answers CRI v1 but lacks RuntimeConfig.
func TestCRIContainerd1(t *testing.T) {
	f := containerd2()
	f.version, f.hasRuntimeConfig = "1.6.20~ds1", false
	rt, got := CRI(context.Background(), criOpts(serveCRI(t, f)))
	wantFailures(t, got,
		"cri: containerd 1.6.20~ds1 is too old: kubelet 1.37 needs containerd >= 2.0 (1.x lacks the CRI RuntimeConfig call); "+
			"fix: install ecom-agent-containerd (containerd 2.x) in place of Debian's containerd package")
	if rt == nil || rt.Version != "1.6.20~ds1" {
		t.Errorf("runtime %v", rt)
	}
}

// Another runtime is judged by the call itself.
func TestCRIWithoutRuntimeConfig(t *testing.T) {
	f := containerd2()
	f.name, f.version, f.hasRuntimeConfig = "cri-o", "1.29.1", false
	_, got := CRI(context.Background(), criOpts(serveCRI(t, f)))
	wantFailures(t, got,
		"cri: cri-o 1.29.1 lacks the CRI RuntimeConfig call: kubelet 1.37 falls back to its own cgroupDriver, 1.38 refuses such runtimes; "+
			"fix: install ecom-agent-containerd (containerd 2.x) in place of this runtime")
}

// containerd with its CRI plugin disabled (disabled_plugins = ["cri"])
// serves gRPC without the RuntimeService.
func TestCRIPluginDisabled(t *testing.T) {
	_, got := CRI(context.Background(), criOpts(serveCRI(t, nil)))
	wantFailures(t, got,
		"cri: unix:///run/containerd/containerd.sock does not serve the CRI v1 API (Unimplemented: unknown service runtime.v1.RuntimeService); "+
			`fix: remove "cri" from disabled_plugins in /etc/containerd/config.toml and restart containerd, or install ecom-agent-containerd (containerd 2.x)`)
}

// A socket whose server is not CRI (it hangs up) fails naming the endpoint.
func TestCRINotCRI(t *testing.T) {
	root, l := listenSock(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	_, got := CRI(context.Background(), criOpts(root))
	if len(got) != 1 {
		t.Fatalf("failures: %v", got)
	}
	t.Log(got[0])
	// The transport's words after "Unavailable:" are gRPC's own.
	const prefix = "cri: unix:///run/containerd/containerd.sock does not answer CRI RuntimeService.Version: Unavailable: "
	const fix = "; fix: is containerd running there? `systemctl status containerd` and `journalctl -u containerd` say; the endpoint must be containerd's CRI socket"
	if msg := got[0].Error(); !strings.HasPrefix(msg, prefix) || !strings.HasSuffix(msg, fix) || strings.Contains(msg, "\n") {
		t.Errorf("failure:\n got  %q\n want %q...%q", msg, prefix, fix)
	}
}

// A server that accepts and never speaks is cut off at Timeout.
func TestCRISilent(t *testing.T) {
	root, l := listenSock(t)
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for c := range conns {
			c.Close()
		}
	})
	o := criOpts(root)
	o.Timeout = 200 * time.Millisecond
	_, got := CRI(context.Background(), o)
	wantFailures(t, got,
		"cri: unix:///run/containerd/containerd.sock does not answer CRI RuntimeService.Version: no answer within 200ms; "+
			"fix: is containerd running there? `systemctl status containerd` and `journalctl -u containerd` say; the endpoint must be containerd's CRI socket")
}

// A socket left by a dead containerd refuses connections.
func TestCRIDeadSocket(t *testing.T) {
	root, l := listenSock(t)
	l.SetUnlinkOnClose(false)
	l.Close()
	_, got := CRI(context.Background(), criOpts(root))
	const prefix = "cri: unix:///run/containerd/containerd.sock does not answer CRI RuntimeService.Version: Unavailable: "
	if len(got) != 1 || !strings.HasPrefix(got[0].Error(), prefix) || !strings.Contains(got[0].Error(), "connection refused") {
		t.Errorf("failures: %v", got)
	}
}

func TestCRIMissingSocket(t *testing.T) {
	root := t.TempDir()
	_, got := CRI(context.Background(), criOpts(root))
	wantFailures(t, got,
		"cri: containerd is not running: no socket at /run/containerd/containerd.sock; "+
			"fix: install ecom-agent-containerd, then `systemctl start containerd`")

	// The default endpoint is containerd's.
	_, got2 := CRI(context.Background(), Options{Root: root})
	wantFailures(t, got2, got[0].Error())

	h := &host{t: t, root: root}
	h.write(sockPath, "")
	_, got = CRI(context.Background(), criOpts(root))
	wantFailures(t, got,
		"cri: /run/containerd/containerd.sock is not a socket; "+
			"fix: remove it and `systemctl restart containerd`, or point the endpoint at containerd's socket")

	o := criOpts(root)
	o.CRIEndpoint = "/run/containerd/containerd.sock"
	_, got = CRI(context.Background(), o)
	wantFailures(t, got,
		`cri: endpoint "/run/containerd/containerd.sock" is not a unix socket URL; fix: write it like "unix:///run/containerd/containerd.sock"`)
}
