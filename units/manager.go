package units

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// Options tune a Manager. Zero fields take the defaults given.
type Options struct {
	// ConnectTimeout bounds connecting to systemd (10s).
	ConnectTimeout time.Duration
	// CallTimeout bounds each D-Bus call (30s).
	CallTimeout time.Duration
	// JobTimeout bounds waiting for a start, stop or restart job (3m). A
	// job still running when it expires is left to systemd.
	JobTimeout time.Duration
	// JournalLines is how many journal lines a JobError carries (20).
	JournalLines int
	// JournalTimeout bounds each journalctl run (10s).
	JournalTimeout time.Duration
	// WatchInterval is how often Watch polls unit states (1s).
	WatchInterval time.Duration
	// Runner runs journalctl; nil runs it on this host.
	Runner Runner
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ConnectTimeout, 10*time.Second)
	def(&o.CallTimeout, 30*time.Second)
	def(&o.JobTimeout, 3*time.Minute)
	def(&o.JournalTimeout, 10*time.Second)
	def(&o.WatchInterval, time.Second)
	if o.JournalLines <= 0 {
		o.JournalLines = 20
	}
	if o.Runner == nil {
		o.Runner = ExecRunner{}
	}
	return o
}

// Manager manages units over a connection to systemd. Its methods are safe
// for concurrent use; Apply and Remove are serialized.
type Manager struct {
	conn   systemd
	root   *hostfs.Root
	opts   Options
	cancel context.CancelFunc

	// mu serializes the methods that write unit files.
	mu sync.Mutex
}

// Connect connects to systemd and returns a Manager writing unit files
// under root (hostfs.New("/") on a real host). The connection lasts until
// Close or until ctx is done, so pass a context that lives as long as the
// Manager, not one with a short deadline.
func Connect(ctx context.Context, root *hostfs.Root, opts Options) (*Manager, error) {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(ctx)
	conn, err := dial(ctx, opts.ConnectTimeout)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	m := newManager(conn, root, opts)
	m.cancel = cancel
	return m, nil
}

// newManager returns a Manager on conn; opts must have their defaults.
func newManager(conn systemd, root *hostfs.Root, opts Options) *Manager {
	return &Manager{conn: conn, root: root, opts: opts, cancel: func() {}}
}

// Close closes the connection to systemd.
func (m *Manager) Close() {
	m.conn.Close()
	m.cancel()
}

// call returns a context for one D-Bus call.
func (m *Manager) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, m.opts.CallTimeout)
}
