package nodecheck

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Runtime is what the container runtime said about itself over CRI.
type Runtime struct {
	Endpoint   string // the CRI endpoint asked
	Name       string // "containerd"
	Version    string // "v2.4.2"
	APIVersion string // the CRI API version: "v1"
	// NetworkReady is false until a CNI is configured: expected on a new
	// node, so it is no failure. NetworkReason and NetworkMessage say why.
	NetworkReady                  bool
	NetworkReason, NetworkMessage string
	// CgroupDriver is the runtime's ("systemd" or "cgroupfs"), which
	// kubelet 1.37 follows over its own setting; "" if it did not say.
	CgroupDriver string
}

// String is one line for the operator, e.g. "containerd v2.4.2 (CRI v1)
// at unix:///run/containerd/containerd.sock, cgroup driver systemd,
// network not ready (NetworkPluginNotReady: cni plugin not initialized;
// expected until a CNI is configured)".
func (r *Runtime) String() string {
	s := fmt.Sprintf("%s %s (CRI %s) at %s", r.Name, r.Version, r.APIVersion, r.Endpoint)
	if r.CgroupDriver != "" {
		s += ", cgroup driver " + r.CgroupDriver
	}
	if r.NetworkReady {
		return s + ", network ready"
	}
	why := r.NetworkReason
	if r.NetworkMessage != "" {
		why += ": " + r.NetworkMessage
	}
	if why == "" {
		why = "no reason given"
	}
	return s + ", network not ready (" + why + "; expected until a CNI is configured)"
}

// CRI checks the container runtime the kubelet will use: its socket
// exists, it answers CRI v1 RuntimeService.Version, Status and
// RuntimeConfig within Options.Timeout, it reports RuntimeReady, and it is
// new enough for kubelet 1.37 (containerd >= 2.0, which has RuntimeConfig).
// NetworkReady false is no failure (no CNI yet); it is in the Runtime,
// which is nil when the runtime did not answer Version.
func CRI(ctx context.Context, o Options) (*Runtime, []Failure) {
	const check = "cri"
	ep := o.CRIEndpoint
	if ep == "" {
		ep = DefaultCRIEndpoint
	}
	logical, ok := strings.CutPrefix(ep, "unix://")
	if !ok || !path.IsAbs(logical) {
		return nil, fail(check, fmt.Sprintf("endpoint %q is not a unix socket URL", ep),
			fmt.Sprintf("write it like %q", DefaultCRIEndpoint))
	}
	sock := o.path(logical)
	fi, err := os.Stat(sock)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fail(check, "containerd is not running: no socket at "+logical,
			"install ecom-agent-containerd, then `systemctl start containerd`")
	case err != nil:
		return nil, fail(check, fmt.Sprintf("cannot stat %s: %v", logical, errors.Unwrap(err)),
			"run ecom-agent as root")
	case fi.Mode().Type() != fs.ModeSocket:
		return nil, fail(check, logical+" is not a socket",
			"remove it and `systemctl restart containerd`, or point the endpoint at containerd's socket")
	}

	ctx, cancel := context.WithTimeout(ctx, o.timeout())
	defer cancel()
	conn, err := DialCRI(sock)
	if err != nil {
		return nil, fail(check, fmt.Sprintf("%s: %v", ep, err), "report this as a bug in ecom-agent")
	}
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)

	v, err := rs.Version(ctx, &runtimeapi.VersionRequest{Version: "v1"})
	if status.Code(err) == codes.Unimplemented {
		return nil, fail(check, fmt.Sprintf("%s does not serve the CRI v1 API (%s)", ep, rpcErr(err, o)),
			`remove "cri" from disabled_plugins in /etc/containerd/config.toml and restart containerd, or install ecom-agent-containerd (containerd 2.x)`)
	}
	if err != nil {
		return nil, fail(check, fmt.Sprintf("%s does not answer CRI RuntimeService.Version: %s", ep, rpcErr(err, o)), deadFix)
	}
	rt := &Runtime{Endpoint: ep, Name: v.GetRuntimeName(), Version: v.GetRuntimeVersion(), APIVersion: v.GetRuntimeApiVersion()}
	name := rt.Name + " " + rt.Version

	var out []Failure
	tooOld := false
	if rt.APIVersion != "v1" {
		out = append(out, Failure{check, fmt.Sprintf("%s speaks CRI API %q; kubelet 1.37 needs v1", name, rt.APIVersion), upgradeFix})
	}
	if rt.Name == "containerd" {
		if major, ok := majorVersion(rt.Version); ok && major < 2 {
			tooOld = true
			out = append(out, Failure{check,
				fmt.Sprintf("%s is too old: kubelet 1.37 needs containerd >= 2.0 (1.x lacks the CRI RuntimeConfig call)", name),
				"install ecom-agent-containerd (containerd 2.x) in place of Debian's containerd package"})
		}
	}

	st, err := rs.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return rt, append(out, Failure{check, fmt.Sprintf("%s does not answer CRI RuntimeService.Status: %s", ep, rpcErr(err, o)), deadFix})
	}
	var ready *runtimeapi.RuntimeCondition
	for _, c := range st.GetStatus().GetConditions() {
		switch c.GetType() {
		case runtimeapi.RuntimeReady:
			ready = c
		case runtimeapi.NetworkReady:
			rt.NetworkReady = c.GetStatus()
			rt.NetworkReason, rt.NetworkMessage = c.GetReason(), c.GetMessage()
		}
	}
	const notReadyFix = "`journalctl -u containerd` says why; then `systemctl restart containerd`"
	switch {
	case ready == nil:
		out = append(out, Failure{check, name + " is not ready: it reports no RuntimeReady condition", notReadyFix})
	case !ready.GetStatus():
		out = append(out, Failure{check,
			fmt.Sprintf("%s is not ready: RuntimeReady is false (%s)", name, reason(ready.GetReason(), ready.GetMessage())),
			notReadyFix})
	}

	if !tooOld {
		rc, err := rs.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
		switch {
		case status.Code(err) == codes.Unimplemented:
			out = append(out, Failure{check,
				fmt.Sprintf("%s lacks the CRI RuntimeConfig call: kubelet 1.37 falls back to its own cgroupDriver, 1.38 refuses such runtimes", name),
				upgradeFix})
		case err != nil:
			out = append(out, Failure{check, fmt.Sprintf("%s does not answer CRI RuntimeService.RuntimeConfig: %s", ep, rpcErr(err, o)), deadFix})
		case rc.GetLinux() != nil:
			switch rc.GetLinux().GetCgroupDriver() {
			case runtimeapi.CgroupDriver_SYSTEMD:
				rt.CgroupDriver = "systemd"
			case runtimeapi.CgroupDriver_CGROUPFS:
				rt.CgroupDriver = "cgroupfs"
			}
		}
	}
	return rt, out
}

const (
	deadFix    = "is containerd running there? `systemctl status containerd` and `journalctl -u containerd` say; the endpoint must be containerd's CRI socket"
	upgradeFix = "install ecom-agent-containerd (containerd 2.x) in place of this runtime"
)

func reason(r, msg string) string {
	switch {
	case r == "" && msg == "":
		return "no reason given"
	case msg == "":
		return r
	case r == "":
		return msg
	}
	return r + ": " + msg
}

// rpcErr is a gRPC error on one line: "Unavailable: connection error: ...",
// or "no answer within 10s".
func rpcErr(err error, o Options) string {
	s := status.Convert(err)
	if s.Code() == codes.DeadlineExceeded {
		return fmt.Sprintf("no answer within %s", o.timeout())
	}
	return strings.Join(strings.Fields(fmt.Sprintf("%s: %s", s.Code(), s.Message())), " ")
}

// majorVersion parses the major number of "v2.4.2", "1.6.20~ds1" or
// "2.0.0-rc.1".
func majorVersion(v string) (int, bool) {
	v = strings.TrimPrefix(v, "v")
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end == 0 {
		return 0, false
	}
	if end > 0 {
		v = v[:end]
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}

// DialCRI returns a gRPC client connection to the CRI runtime listening
// on the unix socket at path (it connects on first use).
func DialCRI(path string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///localhost",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}))
}
