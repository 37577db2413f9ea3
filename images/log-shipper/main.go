// Command log-shipper follows JSON-lines log files and writes their
// records to stdout with fields added: the backend pod's logging sidecar,
// in place of Fluent Bit (which cannot be built for the air-gapped
// images).
//
// It follows the files -path-glob matches (the glob is scanned again
// every -rescan, so new files are picked up), polling them every -poll.
// Each line that is a JSON object is written to stdout as one JSON line
// with the -add and -add-env fields set (they replace same-named keys);
// any other line is written as {"log": "<line>"} plus those fields.
// Empty lines are dropped, and so are lines longer than -max-line-bytes.
// A line is written once its newline is; a rotated file's last line
// without one is written when the file is closed.
//
// Rotation by rename (Python's RotatingFileHandler, logrotate's create):
// when the path names another file, or none, the old file is read to its
// end, kept open for -rotate-wait for late writes, then closed; the new
// file is read from its start. A file that shrinks below the read
// position (truncation) is read again from its start.
//
// Positions are kept in -state-dir/positions.json, per file identity
// (device and inode, plus a fingerprint of the first 64 bytes so a reused
// inode number is not mistaken for the old file), written atomically
// (temporary file, fsync, rename) at most every -flush and on SIGTERM.
// After a restart each file resumes at its saved position, and a file
// rotated away meanwhile is found in its directory and finished, so no
// line is lost or repeated; a kill without SIGTERM repeats at most the
// lines of the last -flush interval. A file found at the first start
// with no saved position is read from its start (-read-from-head=false:
// from its end).
//
// HTTP on -listen: GET /api/v1/health answers 200 "ok" while the tailer
// runs, 503 "starting" until the positions are loaded and the files
// opened, 503 "stalled" when no poll has finished for -stale, 503
// "stopping" after SIGTERM; GET /api/v1/metrics and GET /metrics serve
// counters in Prometheus' text format. SIGTERM or SIGINT: the files are
// read a last time, the positions saved, exit 0. The shipper's own log
// is JSON lines on stderr.
//
// Every flag can also be set by the environment variable LOG_SHIPPER_
// plus its name in upper case with _ for -, e.g. LOG_SHIPPER_STATE_DIR;
// for -add and -add-env a comma-separated list. A flag given on the
// command line wins over its variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type config struct {
	pathGlob, stateDir, listen string
	fields                     map[string]string
	maxLineBytes               int
	poll, rescan, flush        time.Duration
	rotateWait, stale          time.Duration
	readFromHead               bool
}

// pairs is a repeatable KEY=VALUE flag.
type pairs [][2]string

func (p *pairs) String() string { return fmt.Sprint(*p) }
func (p *pairs) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	*p = append(*p, [2]string{k, val})
	return nil
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{fields: map[string]string{}}
	var add, addEnv pairs
	fs := flag.NewFlagSet("log-shipper", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.pathGlob, "path-glob", "/var/log/backend/*.log", "files to follow (`glob`)")
	fs.StringVar(&c.stateDir, "state-dir", "/fluent-bit/state", "`dir`ectory of the positions file")
	fs.StringVar(&c.listen, "listen", ":2020", "HTTP `address` for /api/v1/health and /metrics")
	fs.Var(&add, "add", "add the field `KEY=VALUE` to every record (repeatable)")
	fs.Var(&addEnv, "add-env", "add the field KEY with the value of $VAR, `KEY=VAR` (repeatable)")
	fs.IntVar(&c.maxLineBytes, "max-line-bytes", 65536, "skip lines longer than this")
	fs.DurationVar(&c.poll, "poll", 250*time.Millisecond, "how often the files are read")
	fs.DurationVar(&c.rescan, "rescan", 10*time.Second, "how often the glob is scanned for new files")
	fs.DurationVar(&c.flush, "flush", 5*time.Second, "how often positions are saved, at most")
	fs.DurationVar(&c.rotateWait, "rotate-wait", 5*time.Second, "how long a rotated file is still read")
	fs.DurationVar(&c.stale, "stale", time.Minute, "health fails when no poll finished for this long")
	fs.BoolVar(&c.readFromHead, "read-from-head", true, "read files found at the first start from their start")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "LOG_SHIPPER_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := getenv(name)
		if given[f.Name] || v == "" || err != nil {
			return
		}
		vals := []string{v}
		if _, ok := f.Value.(*pairs); ok {
			vals = strings.Split(v, ",")
		}
		for _, x := range vals {
			if e := f.Value.Set(strings.TrimSpace(x)); e != nil && err == nil {
				err = fmt.Errorf("$%s: %w", name, e)
			}
		}
	})
	if err != nil {
		return c, err
	}
	if _, err := filepath.Match(c.pathGlob, ""); err != nil || c.pathGlob == "" {
		return c, fmt.Errorf("bad -path-glob %q", c.pathGlob)
	}
	if c.stateDir == "" || c.maxLineBytes <= 0 || c.poll <= 0 || c.rescan <= 0 || c.flush <= 0 || c.stale <= 0 || c.rotateWait < 0 {
		return c, errors.New("-state-dir must be set, and -max-line-bytes and the intervals positive")
	}
	for _, kv := range add {
		c.fields[kv[0]] = kv[1]
	}
	for _, kv := range addEnv {
		v := getenv(kv[1])
		if v == "" {
			return c, fmt.Errorf("-add-env %s=%s: $%[2]s is not set", kv[0], kv[1])
		}
		c.fields[kv[0]] = v
	}
	return c, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "log-shipper:", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	s := newShipper(cfg, stdout, log)
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		log.Error("cannot listen", "error", err)
		return 1
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			cancel(err)
		}
	}()
	log.Info("log-shipper started", "glob", cfg.pathGlob, "state_dir", cfg.stateDir, "listen", ln.Addr().String())
	err = s.run(ctx)
	shutdownCtx, done := context.WithTimeout(context.Background(), 2*time.Second)
	srv.Shutdown(shutdownCtx)
	done()
	<-served
	if cause := context.Cause(ctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = fmt.Errorf("HTTP server: %w", cause)
	}
	if err != nil {
		log.Error("log-shipper failed", "error", err)
		return 1
	}
	log.Info("log-shipper stopped")
	return 0
}
