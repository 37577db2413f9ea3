package testhost

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of Options, each overridable by an environment variable so that
// `make rootfs`, tests and cmd/testhosts agree without flags.
const (
	DefaultCacheDir = "/var/cache/ecom-agent-testhost" // $ECOM_TESTHOST_CACHE
	DefaultStateDir = "/var/lib/ecom-testhost"         // $ECOM_TESTHOST_STATE
	envIDLen        = 6
	maxPrefixLen    = 20
)

// Options configure an environment. The zero value is ready to use.
type Options struct {
	// Prefix starts the name of every host: Prefix1, Prefix2, ...
	// Default "h".
	Prefix string
	// StateDir holds the environments' state files and the hosts' disks.
	// Every process of a machine must use the same one: Sweep takes the
	// namespaces, links and cgroups of environments it has no state for
	// as leftovers. Default $ECOM_TESTHOST_STATE, else DefaultStateDir.
	StateDir string
	// CacheDir holds the root file system the hosts boot from.
	// Default $ECOM_TESTHOST_CACHE, else DefaultCacheDir.
	CacheDir string
	// BootTimeout bounds how long a host may take to boot. Default 2m.
	BootTimeout time.Duration
	// BeforeBoot is shell script run as root just before each boot of a
	// host's systemd, in the host's new namespaces, with the host's root
	// (in $ROOT) as working directory and its /proc, /sys, cgroups and
	// /dev already mounted. It is where a test prepares what the kernel
	// side of a host needs, such as the cgroup mounts a kubelet expects.
	BeforeBoot string
	// Detached makes the environment outlive this process: it has no
	// owner, Sweep leaves it alone, and it lasts until Close.
	Detached bool
	// Logf receives progress messages. Default: none.
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = "h"
	}
	if o.StateDir == "" {
		o.StateDir = envOr("ECOM_TESTHOST_STATE", DefaultStateDir)
	}
	if o.CacheDir == "" {
		o.CacheDir = envOr("ECOM_TESTHOST_CACHE", DefaultCacheDir)
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 2 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Env is an environment of test hosts: a network of its own and the hosts
// on it.
type Env struct {
	opts Options
	id   string
	dir  string

	mu     sync.Mutex
	st     *envState // saved to dir/state.json on every change
	hosts  []*Host
	closed bool

	// life is held shared while a host's processes are being launched
	// and exclusively by Close, so that nothing starts during or after
	// the teardown.
	life      sync.RWMutex
	closeOnce sync.Once
	closeErr  error
}

// Open makes a new environment with no hosts yet. It builds the root file
// system if it is not cached yet and first tears down what environments of
// dead processes left behind (see Sweep).
func Open(ctx context.Context, opts Options) (*Env, error) {
	opts = opts.withDefaults()
	if os.Geteuid() != 0 {
		return nil, errors.New("testhost: needs root for namespaces, mounts and cgroups")
	}
	if err := checkPrefix(opts.Prefix); err != nil {
		return nil, err
	}
	rootfs, err := EnsureRootfs(ctx, opts.CacheDir, opts.Logf)
	if err != nil {
		return nil, fmt.Errorf("testhost: %w", err)
	}
	if err := Sweep(ctx, opts); err != nil {
		opts.Logf("testhost: removing leftovers: %v", err) // ours will not collide with them
	}
	if err := raiseInotifyLimits(opts.Logf); err != nil {
		return nil, fmt.Errorf("testhost: %w", err)
	}
	boot, err := bootID()
	if err != nil {
		return nil, fmt.Errorf("testhost: %w", err)
	}
	st := &envState{BootID: boot, Rootfs: rootfs, Prefix: opts.Prefix, BeforeBoot: opts.BeforeBoot}
	if !opts.Detached {
		self, err := processRef(os.Getpid())
		if err != nil {
			return nil, fmt.Errorf("testhost: %w", err)
		}
		st.Owner = &self
	}
	if err := withLock(ctx, globalLockPath(opts.StateDir), func() error { return allocate(opts.StateDir, st) }); err != nil {
		return nil, fmt.Errorf("testhost: %w", err)
	}
	e := &Env{opts: opts, id: st.ID, dir: envDir(opts.StateDir, st.ID), st: st}
	if err := createBridge(ctx, e.id, st.Subnet); err != nil {
		return nil, errors.Join(fmt.Errorf("testhost: %w", err), e.Close())
	}
	if err := createRouter(ctx, e.id, st.Subnet); err != nil {
		return nil, errors.Join(fmt.Errorf("testhost: %w", err), e.Close())
	}
	opts.Logf("testhost: environment %s on %s (state %s)", e.id, withMask(bridgeAddr(st.Subnet)), e.dir)
	return e, nil
}

// allocate gives st an unused ID and subnet and creates its directory and
// state file. Callers hold the global lock.
func allocate(stateDir string, st *envState) error {
	if err := os.MkdirAll(envsDir(stateDir), 0o755); err != nil {
		return fmt.Errorf("allocate: %w", err)
	}
	ids, err := listDir(envsDir(stateDir))
	if err != nil {
		return fmt.Errorf("allocate: %w", err)
	}
	used := map[int]bool{}
	for _, id := range ids {
		if s, err := loadState(envDir(stateDir, id)); err == nil {
			used[s.Subnet] = true
		}
	}
	st.Subnet = 0
	for n := subnetMin; n <= subnetMax && st.Subnet == 0; n++ {
		if !used[n] {
			st.Subnet = n
		}
	}
	if st.Subnet == 0 {
		return fmt.Errorf("allocate: all %d subnets in use", subnetMax-subnetMin+1)
	}
	for range 10 {
		b := make([]byte, envIDLen/2)
		rand.Read(b)
		st.ID = hex.EncodeToString(b)
		err := os.Mkdir(envDir(stateDir, st.ID), 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("allocate: %w", err)
		}
		return saveState(envDir(stateDir, st.ID), st)
	}
	return errors.New("allocate: no unused environment ID")
}

// Attach returns the environment id made by another process, such as one
// of cmd/testhosts. Closing it tears it down.
func Attach(opts Options, id string) (*Env, error) {
	opts = opts.withDefaults()
	if !isEnvID(id) {
		return nil, fmt.Errorf("testhost: attach: %q is no environment ID", id)
	}
	dir := envDir(opts.StateDir, id)
	st, err := loadState(dir)
	if err != nil {
		return nil, fmt.Errorf("testhost: attach %s: %w", id, err)
	}
	e := &Env{opts: opts, id: id, dir: dir, st: st}
	for _, hs := range st.Hosts {
		e.hosts = append(e.hosts, e.newHost(hs))
	}
	return e, nil
}

// List returns the IDs of the environments in the state directory.
func List(opts Options) ([]string, error) {
	opts = opts.withDefaults()
	ids, err := listDir(envsDir(opts.StateDir))
	if err != nil {
		return nil, fmt.Errorf("testhost: %w", err)
	}
	return slices.DeleteFunc(ids, func(id string) bool { return !isEnvID(id) }), nil
}

// ID returns the environment's ID, part of the names of all it creates.
func (e *Env) ID() string { return e.id }

// Dir returns the directory of the environment's state and hosts' disks.
func (e *Env) Dir() string { return e.dir }

// Detached reports whether the environment outlives the process that made
// it.
func (e *Env) Detached() bool { return e.st.Owner == nil }

// OwnerPID returns the PID of the process whose exit ends the environment,
// or 0 if it is detached.
func (e *Env) OwnerPID() int {
	if e.st.Owner == nil {
		return 0
	}
	return e.st.Owner.PID
}

// Gateway returns the machine's address on the hosts' network, which is
// also their default route. Hosts know it as "testhost-gateway".
func (e *Env) Gateway() netip.Addr { return bridgeAddr(e.st.Subnet) }

// SpareAddr is an address on the environment's first segment that no
// host is given (hosts end at .(10+maxHosts)): for a virtual IP the hosts
// move between them.
func (e *Env) SpareAddr() netip.Addr {
	return netip.AddrFrom4([4]byte{10, 77, byte(e.st.Subnet), 254})
}

// Hosts returns the environment's hosts in the order they were added.
func (e *Env) Hosts() []*Host {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.hosts)
}

// Host returns the host named name, or nil.
func (e *Env) Host(name string) *Host {
	for _, h := range e.Hosts() {
		if h.name == name {
			return h
		}
	}
	return nil
}

// StartHosts adds n hosts to the environment and boots them in parallel. It
// returns when all have booted, or with the errors of those that did not.
func (e *Env) StartHosts(ctx context.Context, n int) ([]*Host, error) {
	return e.StartHostsOn(ctx, n, SegmentA)
}

// StartHostsOn is StartHosts with the hosts on segment seg.
func (e *Env) StartHostsOn(ctx context.Context, n int, seg Segment) ([]*Host, error) {
	start := time.Now()
	var hosts []*Host
	for range n {
		h, err := e.addHost(ctx, seg)
		if err != nil {
			return nil, fmt.Errorf("testhost: %w", err)
		}
		hosts = append(hosts, h)
	}
	// Every host knows every other by name, the earlier ones too.
	for _, h := range e.Hosts() {
		if err := h.writeDisk("/etc/hosts", strings.NewReader(string(e.hostsFile())), 0o644); err != nil {
			return nil, fmt.Errorf("testhost: %w", err)
		}
	}
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() { errs[i] = h.Start(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return hosts, fmt.Errorf("testhost: %w", err)
	}
	e.opts.Logf("testhost: started %d hosts in %v", n, time.Since(start).Round(time.Millisecond))
	return hosts, nil
}

// addHost creates the next host: its record, disk, identity and network.
func (e *Env) addHost(ctx context.Context, seg Segment) (*Host, error) {
	e.life.RLock() // no Close while the host's objects are made
	defer e.life.RUnlock()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, errors.New("add host: environment closed")
	}
	index := 1
	for _, hs := range e.st.Hosts {
		index = max(index, hs.Index+1)
	}
	if index > maxHosts {
		e.mu.Unlock()
		return nil, fmt.Errorf("add host: at most %d hosts", maxHosts)
	}
	hs := &hostState{Name: e.st.Prefix + strconv.Itoa(index), Index: index, Addr: segmentHostAddr(e.st.Subnet, index, seg).String(), Segment: seg}
	e.st.Hosts = append(e.st.Hosts, hs)
	h := e.newHost(hs)
	e.hosts = append(e.hosts, h)
	err := saveState(e.dir, e.st)
	e.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("add host: %w", err)
	}

	if err := h.overlay().mount(); err != nil {
		return nil, fmt.Errorf("add host %s: %w", h.name, err)
	}
	if err := h.writeIdentity(); err != nil {
		return nil, fmt.Errorf("add host %s: %w", h.name, err)
	}
	if err := createHostNetwork(ctx, e.id, e.st.Subnet, h.name, index, seg); err != nil {
		return nil, fmt.Errorf("add host %s: %w", h.name, err)
	}
	return h, nil
}

func (e *Env) newHost(hs *hostState) *Host {
	addr, _ := netip.ParseAddr(hs.Addr)
	return &Host{env: e, st: hs, name: hs.Name, index: hs.Index, addr: addr}
}

func (e *Env) hostsFile() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return hostsFile(e.st)
}

// Close tears the environment down: it kills its hosts and removes their
// processes, mounts, namespaces, links, cgroups and disks. Later calls, and
// calls concurrent with the first, return the first one's result once it
// is done.
func (e *Env) Close() error {
	e.closeOnce.Do(func() {
		e.life.Lock()
		defer e.life.Unlock()
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		start := time.Now()
		if err := teardown(ctx, e.opts.StateDir, e.id); err != nil {
			e.closeErr = fmt.Errorf("testhost: close %s: %w", e.id, err)
			return
		}
		e.opts.Logf("testhost: environment %s torn down in %v", e.id, time.Since(start).Round(time.Millisecond))
	})
	return e.closeErr
}

// isClosed reports whether Close was called.
func (e *Env) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

func isEnvID(s string) bool {
	return len(s) == envIDLen && strings.Trim(s, "0123456789abcdef") == ""
}

// checkPrefix accepts host name prefixes that make valid hostnames and
// namespace names when followed by a number.
func checkPrefix(p string) error {
	ok := p != "" && len(p) <= maxPrefixLen && p[0] >= 'a' && p[0] <= 'z' &&
		strings.Trim(p, "abcdefghijklmnopqrstuvwxyz0123456789-") == ""
	if !ok {
		return fmt.Errorf("testhost: host name prefix %q: want a lowercase letter, then letters, digits or '-', at most %d", p, maxPrefixLen)
	}
	return nil
}

// inotifyLimits are the machine's inotify limits test hosts need. They
// count per user across the machine, and every host's systemd, journald,
// containerd and kubelet run as root: five Kubernetes nodes exhaust the
// default 128 instances and containerd's CRI plugin then fails with "too
// many open files". kind documents the same raise for the same reason.
var inotifyLimits = []struct {
	path string
	min  int
}{
	{"/proc/sys/fs/inotify/max_user_instances", 8192},
	{"/proc/sys/fs/inotify/max_user_watches", 524288},
}

// raiseInotifyLimits raises the machine's inotify limits to inotifyLimits,
// never lowering one.
func raiseInotifyLimits(logf func(string, ...any)) error {
	for _, l := range inotifyLimits {
		b, err := os.ReadFile(l.path)
		if err != nil {
			return fmt.Errorf("inotify limits: %w", err)
		}
		cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("inotify limits: %s: %w", l.path, err)
		}
		if cur >= l.min {
			continue
		}
		if err := os.WriteFile(l.path, []byte(strconv.Itoa(l.min)), 0o644); err != nil {
			return fmt.Errorf("inotify limits: raise %s from %d to %d: %w", l.path, cur, l.min, err)
		}
		logf("testhost: raised %s from %d to %d (every host's containerd and kubelet use inotify)", l.path, cur, l.min)
	}
	return nil
}
