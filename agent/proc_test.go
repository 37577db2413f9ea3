package agent

// A harness that runs real agents as processes on loopback: each node is
// this test binary re-executed as a daemon (the agent's real gossip,
// quorum protocol, RPC endpoint and state files), and its etcd.service is
// the test binary re-executed again as real etcd (etcdmain) from the
// config the agent rendered. A node's etcd is its own process group, as a
// separate unit is: killing the agent leaves its etcd running, like
// killing ecom-agent.service does. Crashes and split views come in
// through the daemon's seams (Deps.Hook, Deps.ViewFilter), not through
// changes to the protocol.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"sigs.k8s.io/yaml"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

func TestMain(m *testing.M) {
	switch os.Getenv("ECOM_AGENT_TEST_PROC") {
	case "etcd":
		etcdmain.Main(append([]string{"etcd"}, os.Args[1:]...))
		os.Exit(0)
	case "daemon":
		os.Exit(runDaemonProc(os.Getenv("ECOM_AGENT_TEST_SPEC")))
	}
	os.Exit(m.Run())
}

// procSpec is what a daemon process is told.
type procSpec struct {
	Config string `json:"config"`
	// Join is gossip.join: config validation refuses loopback
	// addresses, rightly for real nodes, so it is set after parsing.
	Join []string `json:"join"`
	// Addr is the node's own loopback address (127.0.10.N): peers derive
	// each other's etcd peer URL from the gossip address and the shared
	// peer port, as on real hosts.
	Addr string `json:"addr"`
	Dir  string `json:"dir"`
	// Shared is a directory all nodes of a test share, for the hooks'
	// once-only markers.
	Shared string `json:"shared"`
	// CrashAt crashes the node (exit without a goodbye) at this hook
	// point, once across the test.
	CrashAt string `json:"crash_at,omitempty"`
	// OneCommit lets a seed deliver its commit to one peer only: further
	// sends stall until the process dies.
	OneCommit bool `json:"one_commit,omitempty"`
	// Hide lists peers hidden from this node's gossip view until Until.
	Hide  []string  `json:"hide,omitempty"`
	Until time.Time `json:"until,omitzero"`
}

// procTiming scales the protocol down for loopback with fast gossip
// (failures detected in about a second).
func procTiming() quorum.Timing {
	return quorum.Timing{
		Settle: 2 * time.Second, PromiseTTL: 6 * time.Second,
		RetryBase: 300 * time.Millisecond, RetryMax: 2 * time.Second,
		DeadAfter: 6 * time.Second, ChangeGap: 2 * time.Second,
	}
}

// once reports whether this caller is the first across the test to claim
// name.
func once(shared, name string) bool {
	f, err := os.OpenFile(filepath.Join(shared, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return false
	}
	_ = f.Close()
	return true
}

func runDaemonProc(specFile string) int {
	data, err := os.ReadFile(specFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var spec procSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg, err := config.Parse([]byte(spec.Config), "test.toml", config.LoadOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg.AdvertiseAddress = netip.MustParseAddr(spec.Addr)
	cfg.Gossip.Join = spec.Join
	root, err := hostfs.New(filepath.Join(spec.Dir, "root"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sd := &procSystemd{root: root, dir: spec.Dir}
	var sender atomic.Bool
	deps := Deps{
		Config: cfg, Root: root, Log: log,
		Systemd: func(context.Context) (Systemd, error) { return sd, nil },
		Socket:  filepath.Join(spec.Dir, "agent.sock"),
		Test:    TestHooks{Timing: procTiming(), FastGossip: true},
	}
	deps.Test.Quorum.Point = func(point, detail string) {
		if spec.OneCommit && point == "send-commit" {
			// The first sender of a commit is the seed: its first
			// send goes, the others stall.
			if !sender.Load() && once(spec.Shared, "first-commit-send") {
				sender.Store(true)
			} else if sender.Load() {
				log.Warn("test: stalling the commit", "to", detail)
				select {}
			}
		}
		if point == spec.CrashAt && (!spec.OneCommit || sender.Load()) && once(spec.Shared, "crashed") {
			log.Warn("test: crashing", "point", point, "detail", detail)
			os.Exit(3)
		}
	}
	if len(spec.Hide) > 0 {
		deps.Test.Quorum.ViewFilter = func(peers []quorum.Peer) []quorum.Peer {
			if time.Now().After(spec.Until) {
				return peers
			}
			return slices.DeleteFunc(peers, func(p quorum.Peer) bool { return slices.Contains(spec.Hide, p.Name) })
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := New(deps).Run(ctx); err != nil {
		log.Error("daemon", "err", err)
		return 1
	}
	return 0
}

// procSystemd plays systemd for one node: etcd.service is a real etcd
// process, in its own process group, found again through its pid file by
// a restarted agent; the other units do nothing (no Kubernetes programs
// here, so the control plane reports that and the quorum goes on).
type procSystemd struct {
	root *hostfs.Root
	dir  string
	mu   sync.Mutex
}

func (p *procSystemd) pidFile() string { return filepath.Join(p.dir, "etcd.pid") }

// etcdPID returns the pid of this node's running etcd, 0 if none.
func etcdPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "etcd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The state follows the command's closing parenthesis.
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
		return 0
	}
	return pid
}

func (p *procSystemd) Apply(context.Context, []units.Spec) (units.Changes, error) {
	return units.Changes{}, nil
}

func (p *procSystemd) Start(_ context.Context, name string) error {
	if name != bootstrap.EtcdUnit {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if etcdPID(p.dir) != 0 {
		return nil
	}
	rendered, err := p.root.ReadFile(bootstrap.EtcdConfigFile)
	if err != nil {
		return err
	}
	conf, err := rebaseEtcdConfig(p.root, rendered)
	if err != nil {
		return err
	}
	file := filepath.Join(p.dir, "etcd-run.yaml")
	if err := os.WriteFile(file, conf, 0o600); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(p.dir, "etcd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(os.Args[0], "--config-file", file)
	cmd.Env = append(os.Environ(), "ECOM_AGENT_TEST_PROC=etcd")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	go func() { _ = cmd.Wait(); logf.Close() }()
	return os.WriteFile(p.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
}

func (p *procSystemd) Stop(_ context.Context, name string) error {
	if name != bootstrap.EtcdUnit {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pid := etcdPID(p.dir)
	if pid == 0 {
		return nil
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	for i := 0; i < 200 && etcdPID(p.dir) != 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return os.Remove(p.pidFile())
}

func (p *procSystemd) Restart(ctx context.Context, name string) error {
	if err := p.Stop(ctx, name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return p.Start(ctx, name)
}

func (p *procSystemd) Status(_ context.Context, name string) (units.UnitStatus, error) {
	st := units.UnitStatus{Name: name, LoadState: "loaded", ActiveState: "inactive", SubState: "dead"}
	if name == bootstrap.EtcdUnit && etcdPID(p.dir) != 0 {
		st.ActiveState, st.SubState = "active", "running"
	}
	return st, nil
}

func (p *procSystemd) Journal(_ context.Context, name string, n int) ([]string, error) {
	if name != bootstrap.EtcdUnit {
		return nil, nil
	}
	f, err := os.Open(filepath.Join(p.dir, "etcd.log"))
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines, nil
}

// rebaseEtcdConfig points a rendered etcd config at the node's root and
// gives its metrics listener a free port.
func rebaseEtcdConfig(root *hostfs.Root, data []byte) ([]byte, error) {
	under, err := bootstrap.EtcdConfigUnder(root, data)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(under, &doc); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	doc["listen-metrics-urls"] = "http://" + l.Addr().String()
	_ = l.Close()
	return yaml.Marshal(doc)
}

// procNode is one node of a harness cluster, seen from the test.
type procNode struct {
	name string
	dir  string
	spec procSpec
	cmd  *exec.Cmd
	done chan struct{}
}

// procCluster is n control-plane nodes with the same config but for
// their names and ports, as one cloud-init file would give them.
type procCluster struct {
	t      *testing.T
	nodes  []*procNode
	shared string
}

func newProcCluster(t *testing.T, n, expect int) *procCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("runs real agents and etcd as processes")
	}
	c := &procCluster{t: t, shared: t.TempDir()}
	// Every node has its own loopback address and the same gossip, RPC
	// and peer ports, like hosts sharing one config; only the etcd
	// client port differs, since each etcd also listens on 127.0.0.1.
	gossipPort, rpcPort, peerPort := configtest.FreePort(t), configtest.FreePort(t), configtest.FreePort(t)
	clients := make([]int, n)
	var join []string
	for i := range n {
		clients[i] = configtest.FreePort(t)
		join = append(join, fmt.Sprintf("127.0.10.%d:%d", i+1, gossipPort))
	}
	for i := range n {
		dir := t.TempDir()
		name := fmt.Sprintf("cp-%d", i+1)
		cfg := fmt.Sprintf(`
cluster_name = "shop-test"
role = "control-plane"
node_name = %q
advertise_address = "10.77.0.11"
cluster_secret = "test-secret-0123456789abcdef0123456789"
control_plane_key = "test-cp-key-fedcba9876543210fedcba98765"
expect = %d
[gossip]
port = %d
rpc_port = %d
[etcd]
client_port = %d
peer_port = %d
[metrics]
address = ""
`, name, expect, gossipPort, rpcPort, clients[i], peerPort)
		c.nodes = append(c.nodes, &procNode{name: name, dir: dir,
			spec: procSpec{Config: cfg, Join: join, Addr: fmt.Sprintf("127.0.10.%d", i+1), Dir: dir, Shared: c.shared}})
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.killAll()
		}
		if t.Failed() {
			for _, nd := range c.nodes {
				tail, _ := os.ReadFile(filepath.Join(nd.dir, "agent.log"))
				if len(tail) > 6000 {
					tail = tail[len(tail)-6000:]
				}
				t.Logf("--- %s agent log (tail):\n%s", nd.name, tail)
				etcdLog, _ := os.ReadFile(filepath.Join(nd.dir, "etcd.log"))
				if len(etcdLog) > 3000 {
					etcdLog = etcdLog[len(etcdLog)-3000:]
				}
				t.Logf("--- %s etcd log (tail):\n%s", nd.name, etcdLog)
			}
		}
	})
	return c
}

// start runs the node's agent.
func (n *procNode) start(t *testing.T) {
	t.Helper()
	specFile := filepath.Join(n.dir, "spec.json")
	data, _ := json.Marshal(n.spec)
	if err := os.WriteFile(specFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(n.dir, "agent.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "ECOM_AGENT_TEST_PROC=daemon", "ECOM_AGENT_TEST_SPEC="+specFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(n.done) }()
}

// exited reports whether the agent process has ended (a crash).
func (n *procNode) exited() bool {
	if n.done == nil {
		return true
	}
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// killAgent kills the agent without a goodbye; its etcd runs on.
func (n *procNode) killAgent() {
	if n.cmd != nil && !n.exited() {
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.done
	}
}

// killAll kills the agent and its etcd: the host is gone.
func (n *procNode) killAll() {
	n.killAgent()
	if pid := etcdPID(n.dir); pid != 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		for i := 0; i < 50 && etcdPID(n.dir) != 0; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func (n *procNode) status() (status.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return status.QueryStatus(ctx, filepath.Join(n.dir, "agent.sock"))
}

// view is what the test sees of the cluster: the cluster ID each serving
// member reports, and its started voters.
type view struct {
	ids      map[string][]string // cluster ID -> nodes reporting it
	voters   map[string]int      // cluster ID -> started voters
	standby  []string
	learners int
	// listed is the most members any node's etcd lists.
	listed int
}

func (c *procCluster) view() view {
	v := view{ids: map[string][]string{}, voters: map[string]int{}}
	for _, n := range c.nodes {
		st, err := n.status()
		if err != nil {
			continue
		}
		if st.Phase == nodestate.PhaseStandby {
			v.standby = append(v.standby, n.name)
		}
		if st.Etcd == nil || st.Etcd.Leader == "" {
			continue
		}
		v.ids[st.Etcd.ClusterID] = append(v.ids[st.Etcd.ClusterID], n.name)
		voters, learners := 0, 0
		for _, m := range st.Etcd.Members {
			switch {
			case m.Learner:
				learners++
			case m.Started:
				voters++
			}
		}
		v.voters[st.Etcd.ClusterID] = max(v.voters[st.Etcd.ClusterID], voters)
		v.learners = max(v.learners, learners)
		v.listed = max(v.listed, len(st.Etcd.Members))
	}
	return v
}

// await polls until cond holds, failing the test after limit. It also
// checks, on every poll, that no two clusters with a leader ever exist.
func (c *procCluster) await(limit time.Duration, what string, cond func(view) error) view {
	c.t.Helper()
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		v := c.view()
		if len(v.ids) > 1 {
			c.t.Fatalf("two etcd clusters with a leader: %v", v.ids)
		}
		if last = cond(v); last == nil {
			return v
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("%s: not after %s: %v", what, limit, last)
	return view{}
}

// formed is the end every formation case must reach: one cluster, three
// started voters seen by three members, the rest on standby.
func formed(n int) func(view) error {
	return func(v view) error {
		if len(v.ids) != 1 {
			return fmt.Errorf("clusters %v", v.ids)
		}
		for id, nodes := range v.ids {
			if len(nodes) != 3 || v.voters[id] != 3 {
				return fmt.Errorf("cluster %s: members %v, %d started voters", id, nodes, v.voters[id])
			}
		}
		if len(v.standby) != n-3 {
			return fmt.Errorf("standby %v", v.standby)
		}
		return nil
	}
}
