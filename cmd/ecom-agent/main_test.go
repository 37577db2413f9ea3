package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary act as ecom-agent itself: tests run
// os.Args[0] with ECOM_AGENT_TEST_MAIN=1 to exercise the real main path
// (for example `ecom-agent etcd`) without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("ECOM_AGENT_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// runCLI runs the CLI in-process and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

const testConfigTOML = `
cluster_name = "shop-test"
role = "control-plane"
node_name = "cp-1"
advertise_address = "10.77.0.11"
cluster_secret = "test-secret-0123456789abcdef0123456789"
control_plane_key = "test-cp-key-fedcba9876543210fedcba98765"
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRenderTwice(t *testing.T) {
	cfg := writeConfig(t, testConfigTOML)
	root := t.TempDir()
	code, out, errOut := runCLI(t, "render", "--config", cfg, "--root", root)
	if code != exitOK {
		t.Fatalf("render exited %d: %s", code, errOut)
	}
	if !strings.Contains(out, "created") || !strings.Contains(out, filepath.Join(root, "etc/kubernetes/pki/ca.crt")) {
		t.Errorf("render output does not list what it created:\n%s", out)
	}
	code, out, errOut = runCLI(t, "render", "--config", cfg, "--root", root)
	if code != exitOK {
		t.Fatalf("second render exited %d: %s", code, errOut)
	}
	if !strings.Contains(out, " 0 created, 0 updated") {
		t.Errorf("second render changed files:\n%s", out)
	}
}

// An invalid config exits 78 (EX_CONFIG), not 2, which is status's down.
func TestInvalidConfigExits78AndWritesNothing(t *testing.T) {
	cfg := writeConfig(t, testConfigTOML+"\n[apiserver]\nextra_san = [\"x\"]\n")
	root := t.TempDir()
	code, _, errOut := runCLI(t, "render", "--config", cfg, "--root", root)
	if code != exitConfig {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitConfig, errOut)
	}
	for _, want := range []string{"apiserver.extra_san", "config.toml:10:", "extra_sans", "nothing was changed"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 0 {
		t.Errorf("files were written despite the invalid config: %v", entries)
	}
}

func TestMissingConfigFile(t *testing.T) {
	code, _, errOut := runCLI(t, "render", "--config", filepath.Join(t.TempDir(), "nope.toml"), "--root", t.TempDir())
	if code != exitConfig || !strings.Contains(errOut, "nope.toml") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"render"},                       // --root missing
		{"render", "--root", "relative"}, // not absolute, but config is read first: use a valid config below
		{"frobnicate"},
		{"version", "extra"},
		{"render", "--bogus"},
	} {
		if args[len(args)-1] == "relative" {
			args = append(args, "--config", writeConfig(t, testConfigTOML))
		}
		code, _, errOut := runCLI(t, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d; stderr %q", args, code, exitUsage, errOut)
		}
	}
}

// reset is destructive: without a terminal to ask on, it wants --yes
// and changes nothing.
func TestResetWantsConfirmation(t *testing.T) {
	code, out, errOut := runCLI(t, "reset", "--config", writeConfig(t, testConfigTOML))
	if code != exitUsage || out != "" || !strings.Contains(errOut, "pass --yes to confirm (or --dry-run") {
		t.Errorf("reset: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// join checks the config before it touches systemd: a bad config exits
// 78 and does nothing.
func TestJoinRefusesABadConfigFirst(t *testing.T) {
	code, out, errOut := runCLI(t, "join", "--config", writeConfig(t, "cluster_name = \"shop\"\nrole = \"control-plane\"\nexpct = 3\n"))
	if code != exitConfig || out != "" || !strings.Contains(errOut, "expct") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// join's preflight: a control-plane node without the Kubernetes programs,
// on an address that is not this host's, exits 3 with every failure and
// its fix, and starts nothing (it never reaches systemd). (The kubelet's
// checks of this machine add their own failures: how many depends on
// the machine, so only these two are asserted.)
func TestJoinPreflightFailsWithEveryFix(t *testing.T) {
	cfg := testConfigTOML + "[binaries]\nkube_apiserver = \"/nonexistent/kube-apiserver\"\n"
	code, out, errOut := runCLI(t, "join", "--config", writeConfig(t, cfg))
	for _, want := range []string{
		"preflight check(s) failed; nothing was started",
		"[binaries] kube-apiserver not found at /nonexistent/kube-apiserver",
		"binaries.kube_apiserver",
		"[address] 10.77.0.11 is not an address of this host",
		"fix: set advertise_address",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if code != exitPreflight || out != "" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != exitOK || !strings.HasPrefix(out, "ecom-agent ") {
		t.Fatalf("exit %d out %q", code, out)
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// join's progress: a line per change in a log, one line redrawn in
// place on a terminal, ended before anything else prints.
func TestJoinProgress(t *testing.T) {
	var log, tty bytes.Buffer
	start := time.Now()
	p := &progress{w: &log, start: start}
	p.line("waiting-for-peers: 1 more")
	p.line("joined: cp-1")
	p.done()
	if got := log.String(); strings.Count(got, "\n") != 2 || strings.Contains(got, "\r") || !strings.Contains(got, "] joined: cp-1\n") {
		t.Errorf("log progress %q", got)
	}
	q := &progress{w: &tty, tty: true, start: start}
	q.line("waiting-for-peers: 1 more")
	q.line("joined: cp-1")
	if got := tty.String(); strings.Count(got, "\r\x1b[2K") != 2 || strings.Contains(got, "\n") {
		t.Errorf("terminal progress before done %q", got)
	}
	q.done()
	q.done()
	if got := tty.String(); !strings.HasSuffix(got, "joined: cp-1\n") || strings.Count(got, "\n") != 1 {
		t.Errorf("terminal progress after done %q", got)
	}
}
