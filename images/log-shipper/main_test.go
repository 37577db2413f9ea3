package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigFlagsAndEnv(t *testing.T) {
	getenv := env(map[string]string{
		"LOG_SHIPPER_STATE_DIR":      "/from-env",
		"LOG_SHIPPER_ADD":            "cluster=prod, team=shop",
		"LOG_SHIPPER_MAX_LINE_BYTES": "4096",
		"POD_NAMESPACE":              "ecom", "POD_NAME": "backend-7",
	})
	c, err := parseConfig([]string{"-state-dir", "/from-flag", "-add-env", "namespace=POD_NAMESPACE",
		"-add-env", "pod=POD_NAME", "-flush", "2s"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.stateDir != "/from-flag" || c.maxLineBytes != 4096 || c.flush != 2*time.Second ||
		c.pathGlob != "/var/log/backend/*.log" || c.listen != ":2020" || !c.readFromHead {
		t.Errorf("config %+v", c)
	}
	wantFields := map[string]string{"cluster": "prod", "team": "shop", "namespace": "ecom", "pod": "backend-7"}
	if len(c.fields) != len(wantFields) {
		t.Errorf("fields %v, want %v", c.fields, wantFields)
	}
	for k, v := range wantFields {
		if c.fields[k] != v {
			t.Errorf("fields %v, want %v", c.fields, wantFields)
		}
	}
	// -add on the command line replaces $LOG_SHIPPER_ADD.
	c, err = parseConfig([]string{"-add", "cluster=x"}, getenv, io.Discard)
	if err != nil || len(c.fields) != 1 || c.fields["cluster"] != "x" {
		t.Errorf("fields %v, %v", c.fields, err)
	}
	for _, bad := range [][]string{
		{"-add-env", "pod=NOT_SET"}, {"-add", "novalue"}, {"-max-line-bytes", "0"},
		{"-path-glob", "[x"}, {"-poll", "0s"}, {"extra"},
	} {
		if _, err := parseConfig(bad, getenv, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := parseConfig(nil, env(map[string]string{"LOG_SHIPPER_FLUSH": "soon"}), io.Discard); err == nil {
		t.Error("bad $LOG_SHIPPER_FLUSH accepted")
	}
}

func TestRunExitCodes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // as if SIGTERM came at once
	dir := t.TempDir()
	args := []string{"-listen", "127.0.0.1:0", "-state-dir", filepath.Join(dir, "state"), "-path-glob", filepath.Join(dir, "*.log")}
	var stderr bytes.Buffer
	if code := run(ctx, args, env(nil), io.Discard, &stderr); code != 0 {
		t.Errorf("exit %d, want 0: %s", code, stderr.String())
	}
	if code := run(ctx, []string{"-add-env", "pod=POD_NAME"}, env(nil), io.Discard, io.Discard); code != 2 {
		t.Errorf("exit %d for a missing variable, want 2", code)
	}
	if code := run(ctx, []string{"-h"}, env(nil), io.Discard, io.Discard); code != 0 {
		t.Errorf("exit %d for -h, want 0", code)
	}
	// A state directory that cannot be made.
	block := filepath.Join(dir, "file")
	write(t, block, "")
	args = []string{"-listen", "127.0.0.1:0", "-state-dir", filepath.Join(block, "state"), "-path-glob", filepath.Join(dir, "*.log")}
	if code := run(ctx, args, env(nil), io.Discard, io.Discard); code != 1 {
		t.Errorf("exit %d for a bad state dir, want 1", code)
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestHealthAndMetrics(t *testing.T) {
	dir := t.TempDir()
	logLines(t, filepath.Join(dir, "logs", "access.log"), "", 0, 3)
	write(t, filepath.Join(dir, "logs", "access.log"), "not json\n")
	s := newShipper(testConfig(dir), io.Discard, slog.New(slog.NewTextHandler(t.Output(), nil)))
	now := time.Now()
	s.now = func() time.Time { return now }
	h := s.handler()
	if code, body := get(t, h, "/api/v1/health"); code != 503 || body != "starting\n" {
		t.Errorf("before start: %d %q", code, body)
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	defer s.closeAll()
	if code, body := get(t, h, "/api/v1/health"); code != 200 || body != "ok\n" {
		t.Errorf("running: %d %q", code, body)
	}
	now = now.Add(2 * time.Minute)
	if code, body := get(t, h, "/api/v1/health"); code != 503 || body != "stalled\n" {
		t.Errorf("no poll for 2m: %d %q", code, body)
	}
	s.poll()
	if code, _ := get(t, h, "/api/v1/health"); code != 200 {
		t.Errorf("after a poll: %d", code)
	}
	s.health.state.Store(stateStopping)
	if code, body := get(t, h, "/api/v1/health"); code != 503 || body != "stopping\n" {
		t.Errorf("stopping: %d %q", code, body)
	}
	for _, path := range []string{"/metrics", "/api/v1/metrics"} {
		code, body := get(t, h, path)
		for _, want := range []string{
			"# TYPE log_shipper_lines_total counter\nlog_shipper_lines_total 4\n",
			"log_shipper_parse_errors_total 1\n",
			"# TYPE log_shipper_files_followed gauge\nlog_shipper_files_followed 1\n",
		} {
			if code != 200 || !strings.Contains(body, want) {
				t.Errorf("%s: %d, lacks %q:\n%s", path, code, want, body)
			}
		}
	}
}

// lockedBuffer is stdout for a shipper running in another goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestCancelShipsAndSavesPositions(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir) // polls every hour: only the start and the stop read
	log := filepath.Join(dir, "logs", "access.log")
	logLines(t, log, "", 0, 2)
	var out lockedBuffer
	s := newShipper(cfg, &out, slog.New(slog.NewTextHandler(t.Output(), nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.health.state.Load() != stateRunning {
		if time.Now().After(deadline) {
			t.Fatal("shipper did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	logLines(t, log, "", 2, 4)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if n := strings.Count(out.String(), "\n"); n != 4 {
		t.Errorf("%d records shipped, want 4:\n%s", n, out.String())
	}
	data, err := os.ReadFile(filepath.Join(cfg.stateDir, "positions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st positions
	fi, _ := os.Stat(log)
	if err := json.Unmarshal(data, &st); err != nil || len(st.Files) != 1 || st.Files[0].Offset != fi.Size() || st.Files[0].Path != log {
		t.Errorf("positions %s (%v), want offset %d", data, err, fi.Size())
	}
}

// TestConcurrentRotation runs the shipper's loop while a writer logs and
// rolls the file over as RotatingFileHandler does (write, close, rename,
// a new file at the next write): every line arrives once, in order. The
// writer waits for the shipper to open each new file and to see each
// rollover, as a file created and rotated away between two polls is
// never seen (as with any tailer of *.log).
func TestConcurrentRotation(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.poll, cfg.rescan = time.Millisecond, 5*time.Millisecond // no file yet: the rescan finds it
	log := filepath.Join(dir, "logs", "access.log")
	var out lockedBuffer
	s := newShipper(cfg, &out, slog.New(slog.NewTextHandler(t.Output(), nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("shipper did not %s", what)
			}
		}
	}
	const rollovers, perFile = 20, 50
	for r := range rollovers {
		first := r * perFile
		logLines(t, log, "", first, first+1)
		waitFor("follow the new file", func() bool { return s.m.lines.Load() > int64(first) })
		for i := first + 1; i < first+perFile; i++ {
			logLines(t, log, "", i, i+1)
		}
		rollover(t, log, 3)
		waitFor("see the rollover", func() bool { return s.m.rotations.Load() > int64(r) })
	}
	logLines(t, log, "", rollovers*perFile, rollovers*perFile+1)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil // for the deferred receive
	var got []string
	for line := range strings.Lines(out.String()) {
		var r struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Msg)
	}
	checkMsgs(t, got, want("", 0, rollovers*perFile+1))
}
