package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testConfig follows dir/logs/*.log; the intervals are long because the
// tests call poll and rescan themselves.
func testConfig(dir string) config {
	return config{
		pathGlob: filepath.Join(dir, "logs", "*.log"), stateDir: filepath.Join(dir, "state"),
		fields:       map[string]string{"cluster": "c1", "namespace": "shop", "pod": "backend-0"},
		maxLineBytes: 1024, poll: time.Hour, rescan: time.Hour, flush: time.Hour,
		stale: time.Minute, readFromHead: true,
	}
}

type testShipper struct {
	*shipper
	out bytes.Buffer
	t   *testing.T
}

func startShipper(t *testing.T, cfg config) *testShipper {
	t.Helper()
	ts := &testShipper{t: t}
	ts.shipper = newShipper(cfg, &ts.out, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err := ts.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.closeAll)
	return ts
}

// stop does what run does on SIGTERM.
func (ts *testShipper) stop() {
	ts.t.Helper()
	ts.poll()
	if err := ts.saveState(); err != nil {
		ts.t.Fatal(err)
	}
	ts.closeAll()
}

// records returns the records written since the last call.
func (ts *testShipper) records() []map[string]any {
	ts.t.Helper()
	var recs []map[string]any
	for line := range strings.Lines(ts.out.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			ts.t.Fatalf("output line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	ts.out.Reset()
	return recs
}

// msgs returns the "msg" fields of the records written since the last
// call, checking the added fields of each.
func (ts *testShipper) msgs() []string {
	ts.t.Helper()
	var out []string
	for _, r := range ts.records() {
		if r["cluster"] != "c1" || r["namespace"] != "shop" || r["pod"] != "backend-0" {
			ts.t.Errorf("record %v lacks the added fields", r)
		}
		out = append(out, fmt.Sprint(r["msg"]))
	}
	return out
}

func write(t *testing.T, path string, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// logLines writes JSON lines {"msg": "<prefix><i>"} for i in [from, to).
func logLines(t *testing.T, path, prefix string, from, to int) {
	t.Helper()
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "{\"msg\": \"%s%d\", \"status\": 200}\n", prefix, i)
	}
	write(t, path, b.String())
}

func want(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, prefix+strconv.Itoa(i))
	}
	return out
}

// rollover renames as Python's RotatingFileHandler.doRollover does:
// base.N-1 to base.N, ..., base to base.1; the next write creates base.
func rollover(t *testing.T, base string, backups int) {
	t.Helper()
	for i := backups - 1; i > 0; i-- {
		src := base + "." + strconv.Itoa(i)
		if _, err := os.Stat(src); err == nil {
			if err := os.Rename(src, base+"."+strconv.Itoa(i+1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Rename(base, base+".1"); err != nil {
		t.Fatal(err)
	}
}

func checkMsgs(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("shipped %q, want %q", got, want)
	}
}

func TestAppendedLinesShippedWithFields(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "logs", "access.log")
	logLines(t, log, "a", 0, 3)
	ts := startShipper(t, testConfig(dir))
	checkMsgs(t, ts.msgs(), want("a", 0, 3))

	logLines(t, log, "a", 3, 5)
	write(t, log, `{"msg": "a5", "pod": "from-app"`) // no newline yet
	ts.poll()
	checkMsgs(t, ts.msgs(), want("a", 3, 5))
	write(t, log, ", \"path\": \"/cart?x=1&y=<2>\"}\n")
	ts.poll()
	recs := ts.records()
	if len(recs) != 1 || recs[0]["msg"] != "a5" || recs[0]["pod"] != "backend-0" || recs[0]["path"] != "/cart?x=1&y=<2>" {
		t.Fatalf("completed line shipped as %v", recs)
	}
	if got := ts.m.lines.Load(); got != 6 {
		t.Errorf("lines_total = %d, want 6", got)
	}
}

func TestNonJSONLinesWrapped(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "logs", "app.log"),
		"plain & <text>\r\n[1,2]\n\"str\"\nnull\n\n{\"ok\": true}\n{broken\n")
	ts := startShipper(t, testConfig(dir))
	out := ts.out.String()
	recs := ts.records()
	var logs []string
	for _, r := range recs {
		if r["cluster"] != "c1" {
			t.Errorf("record %v lacks cluster", r)
		}
		if l, ok := r["log"].(string); ok {
			logs = append(logs, l)
		} else if r["ok"] != true {
			t.Errorf("unexpected record %v", r)
		}
	}
	checkMsgs(t, logs, []string{"plain & <text>", "[1,2]", `"str"`, "null", "{broken"})
	if len(recs) != 6 || ts.m.parseErrors.Load() != 5 {
		t.Errorf("%d records, %d parse errors; want 6, 5", len(recs), ts.m.parseErrors.Load())
	}
	if !strings.Contains(out, `"plain & <text>"`) {
		t.Errorf("HTML characters escaped: %s", out)
	}
}

func TestRotationByRename(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "logs", "access.log")
	logLines(t, log, "", 0, 10)
	ts := startShipper(t, testConfig(dir))
	got := ts.msgs()

	// Lines written just before the rollover, not yet read: they must
	// come from the renamed file before the new file's lines.
	logLines(t, log, "", 10, 15)
	rollover(t, log, 3)
	logLines(t, log, "", 15, 20)
	ts.poll()
	got = append(got, ts.msgs()...)

	// A second rollover while the new file is still unread, then
	// between two polls of the new file a rollover with no new file yet
	// (RotatingFileHandler with delay=True).
	logLines(t, log, "", 20, 25)
	rollover(t, log, 3)
	logLines(t, log, "", 25, 30)
	ts.poll()
	logLines(t, log, "", 30, 32)
	rollover(t, log, 3)
	ts.poll()
	got = append(got, ts.msgs()...)
	logLines(t, log, "", 32, 40)
	ts.poll()
	ts.poll()
	got = append(got, ts.msgs()...)
	checkMsgs(t, got, want("", 0, 40))
	if r, f := ts.m.rotations.Load(), ts.m.files.Load(); r != 3 || f != 1 {
		t.Errorf("rotations %d, files followed %d; want 3, 1", r, f)
	}
}

func TestRotatedFileReadDuringRotateWait(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.rotateWait = 5 * time.Second
	log := filepath.Join(dir, "logs", "access.log")
	logLines(t, log, "", 0, 2)
	late, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0) // a second writer
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	ts := startShipper(t, cfg)
	now := time.Now()
	ts.now = func() time.Time { return now }
	rollover(t, log, 2)
	logLines(t, log, "new", 0, 1)
	ts.poll()
	fmt.Fprintf(late, "{\"msg\": \"2\"}\n{\"msg\": \"3\"}")
	ts.poll()
	now = now.Add(6 * time.Second) // the wait is over: the last line, without newline, is shipped
	ts.poll()
	fmt.Fprintf(late, "{\"msg\": \"too late\"}\n")
	ts.poll()
	checkMsgs(t, ts.msgs(), []string{"0", "1", "new0", "2", "3"})
	if f := ts.m.files.Load(); f != 1 {
		t.Errorf("files followed %d, want 1", f)
	}
}

func TestRestartResumes(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	log := filepath.Join(dir, "logs", "access.log")
	logLines(t, log, "", 0, 5)
	ts := startShipper(t, cfg)
	write(t, log, `{"msg": "half`)
	ts.stop()
	checkMsgs(t, ts.msgs(), want("", 0, 5))

	write(t, log, "-line\"}\n")
	logLines(t, log, "", 5, 8)
	ts = startShipper(t, cfg)
	checkMsgs(t, ts.msgs(), append([]string{"half-line"}, want("", 5, 8)...))
	ts.stop()
	ts = startShipper(t, cfg)
	checkMsgs(t, ts.msgs(), nil)
}

func TestRestartAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	log := filepath.Join(dir, "logs", "access.log")
	logLines(t, log, "", 0, 5)
	ts := startShipper(t, cfg)
	ts.stop()
	got := ts.msgs()

	// While the shipper is down the file gets more lines and is rotated
	// twice: the saved file is now access.log.2, unmatched by the glob.
	logLines(t, log, "", 5, 8)
	rollover(t, log, 3)
	logLines(t, log, "", 8, 10)
	rollover(t, log, 3)
	logLines(t, log, "", 10, 12)
	ts = startShipper(t, cfg)
	got = append(got, ts.msgs()...)
	// access.log.1 was never followed: its lines are lost, as with any
	// tailer of *.log; the saved file's rest and the new file are not.
	checkMsgs(t, got, append(want("", 0, 8), want("", 10, 12)...))
	ts.poll() // rotate-wait 0: the recovered file is closed
	if f := ts.m.files.Load(); f != 1 {
		t.Errorf("files followed %d, want 1", f)
	}
}

func TestTruncation(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	log := filepath.Join(dir, "logs", "access.log")
	logLines(t, log, "", 0, 5)
	ts := startShipper(t, cfg)
	if err := os.Truncate(log, 0); err != nil {
		t.Fatal(err)
	}
	logLines(t, log, "t", 0, 2)
	ts.poll()
	checkMsgs(t, ts.msgs(), append(want("", 0, 5), want("t", 0, 2)...))
	ts.stop()

	// Truncated while the shipper is down.
	if err := os.Truncate(log, 0); err != nil {
		t.Fatal(err)
	}
	logLines(t, log, "u", 0, 1)
	ts = startShipper(t, cfg)
	checkMsgs(t, ts.msgs(), want("u", 0, 1))
	if n := ts.m.truncations.Load(); n != 1 {
		t.Errorf("truncations %d, want 1", n)
	}
}

func TestOverLongLinesSkipped(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.maxLineBytes = 100
	log := filepath.Join(dir, "logs", "access.log")
	exact := `{"msg": "exact", "pad": "` + strings.Repeat("x", 100-27) + `"}`
	if len(exact) != 100 {
		t.Fatalf("exact line has %d bytes", len(exact))
	}
	write(t, log, "{\"msg\": \"s0\"}\n"+strings.Repeat("y", 101)+"\n"+exact+"\n"+
		strings.Repeat("z", 3*chunkSize+7)+"\n{\"msg\": \"s1\"}\n")
	ts := startShipper(t, cfg)
	// One split across polls: 60 bytes, then 60 more and the newline.
	write(t, log, strings.Repeat("w", 60))
	ts.poll()
	write(t, log, strings.Repeat("w", 60)+"\n{\"msg\": \"s2\"}\n")
	ts.poll()
	// One still being written when the shipper stops: skipped after the
	// restart too, not shipped from its middle.
	write(t, log, strings.Repeat("v", 150))
	ts.stop()
	checkMsgs(t, ts.msgs(), []string{"s0", "exact", "s1", "s2"})
	if n := ts.m.skipped.Load(); n != 4 {
		t.Errorf("skipped %d, want 4", n)
	}
	write(t, log, "vvv\n{\"msg\": \"s3\"}\n")
	ts = startShipper(t, cfg)
	checkMsgs(t, ts.msgs(), []string{"s3"})
}

func TestReusedInodeNotResumed(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	log := filepath.Join(dir, "logs", "access.log")
	logLines(t, log, "", 0, 4)
	fi, err := os.Stat(log)
	if err != nil {
		t.Fatal(err)
	}
	id := idOf(fi)
	f, err := os.Open(log)
	if err != nil {
		t.Fatal(err)
	}
	n, h, _ := headHash(f, 20)
	f.Close()
	lineLen := int64(len("{\"msg\": \"0\", \"status\": 200}\n"))
	for _, c := range []struct {
		hash string
		want []string
	}{
		{strconv.FormatUint(h, 16), want("", 2, 4)},   // the same file: resumed
		{strconv.FormatUint(h+1, 16), want("", 0, 4)}, // another file: from the start
	} {
		st := positions{Version: 1, Files: []position{{Path: log, Dev: id.dev, Ino: id.ino,
			Offset: 2 * lineLen, HeadLen: n, HeadHash: c.hash}}}
		data, _ := json.Marshal(st)
		if err := writeAtomic(dir, "positions.json", data); err != nil {
			t.Fatal(err)
		}
		cfg.stateDir = dir
		ts := startShipper(t, cfg)
		checkMsgs(t, ts.msgs(), c.want)
		ts.closeAll()
	}
}

func TestNewFilesAndDamagedState(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	write(t, filepath.Join(cfg.stateDir, "positions.json"), "{not json")
	ts := startShipper(t, cfg)
	checkMsgs(t, ts.msgs(), nil)
	logLines(t, filepath.Join(dir, "logs", "b.log"), "b", 0, 2)
	logLines(t, filepath.Join(dir, "logs", "a.log"), "a", 0, 1)
	ts.poll()
	checkMsgs(t, ts.msgs(), nil) // not matched until the rescan
	ts.rescan(false)
	ts.poll()
	checkMsgs(t, ts.msgs(), []string{"a0", "b0", "b1"})
	if f := ts.m.files.Load(); f != 2 {
		t.Errorf("files followed %d, want 2", f)
	}
	ts.stop()
	entries, _ := os.ReadDir(cfg.stateDir)
	if len(entries) != 1 || entries[0].Name() != "positions.json" {
		t.Errorf("state dir holds %v, want positions.json alone", entries)
	}
}

func TestReadFromHeadFalse(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.readFromHead = false
	log := filepath.Join(dir, "logs", "access.log")
	logLines(t, log, "old", 0, 3)
	ts := startShipper(t, cfg)
	logLines(t, log, "", 0, 1)
	logLines(t, filepath.Join(dir, "logs", "later.log"), "later", 0, 1)
	ts.rescan(false)
	ts.poll()
	checkMsgs(t, ts.msgs(), []string{"0", "later0"})
}
