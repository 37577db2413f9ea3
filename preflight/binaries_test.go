package preflight

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
)

func TestCheckSkew(t *testing.T) {
	for _, c := range []struct {
		name string
		got  map[string]string
		want string // substring of the error; "" for none
	}{
		{"all equal", map[string]string{"kube-apiserver": "v1.37.2", "kube-controller-manager": "v1.37.2", "kube-scheduler": "v1.37.2"}, ""},
		{"patch differs", map[string]string{"kube-apiserver": "v1.37.0", "kube-scheduler": "v1.37.5"}, ""},
		{"scheduler one older", map[string]string{"kube-apiserver": "v1.37.2", "kube-scheduler": "v1.36.9"}, ""},
		{"kubelet three older", map[string]string{"kube-apiserver": "v1.37.2", "kubelet": "v1.34.1"}, ""},
		{"apiserver other minor", map[string]string{"kube-apiserver": "v1.36.4"}, "kube-apiserver is 1.36.4 but this agent renders flags for v1.37.2"},
		{"controller manager newer", map[string]string{"kube-apiserver": "v1.37.2", "kube-controller-manager": "v1.38.0"}, "kube-controller-manager 1.38.0 is newer than kube-apiserver"},
		{"scheduler two older", map[string]string{"kube-apiserver": "v1.37.2", "kube-scheduler": "v1.35.0"}, "more than 1 minor version(s) older"},
		{"kubelet four older", map[string]string{"kube-apiserver": "v1.37.2", "kubelet": "v1.33.0"}, "kubelet 1.33.0 is more than 3"},
		{"garbage", map[string]string{"kube-apiserver": "latest"}, `reports version "latest"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := CheckSkew("v1.37.2", c.got)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestCheckBinaries(t *testing.T) {
	root, err := hostfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{KubernetesVersion: "v1.37.2", Binaries: config.Binaries{
		KubeAPIServer:         "/opt/k/kube-apiserver",
		KubeControllerManager: "/opt/k/kube-controller-manager",
		KubeScheduler:         "/opt/k/kube-scheduler",
		KubeProxy:             "/opt/k/kube-proxy",
	}}
	fake := func(path, ver string) {
		t.Helper()
		if _, err := root.WriteFile(path, []byte("#!/bin/sh\necho Kubernetes "+ver+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fake(cfg.Binaries.KubeAPIServer, "v1.37.2")
	fake(cfg.Binaries.KubeControllerManager, "v1.37.2")
	fake(cfg.Binaries.KubeProxy, "v1.36.0")
	_, err = CheckBinaries(context.Background(), root, cfg)
	if err == nil || !strings.Contains(err.Error(), "kube-scheduler not found at /opt/k/kube-scheduler") || !strings.Contains(err.Error(), "binaries.kube_scheduler") {
		t.Fatalf("missing scheduler: error %v", err)
	}
	fake(cfg.Binaries.KubeScheduler, "v1.38.1")
	if _, err := CheckBinaries(context.Background(), root, cfg); err == nil || !strings.Contains(err.Error(), "kube-scheduler 1.38.1 is newer") {
		t.Fatalf("newer scheduler: error %v", err)
	}
	fake(cfg.Binaries.KubeScheduler, "v1.37.1")
	got, err := CheckBinaries(context.Background(), root, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[2].Version != "v1.37.1" || got[3].Version != "v1.36.0" {
		t.Fatalf("got %+v", got)
	}
	if err := os.WriteFile(root.Path(cfg.Binaries.KubeScheduler), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckBinaries(context.Background(), root, cfg); err == nil || !strings.Contains(err.Error(), "does not run") {
		t.Fatalf("broken scheduler: error %v", err)
	}
}

// The programs' --version is asked once per file: again only when the
// file is replaced or rewritten.
func TestBinaryVersionRemembered(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kube-apiserver")
	runs := filepath.Join(dir, "runs")
	write := func(ver string) {
		t.Helper()
		script := "#!/bin/sh\necho run >> " + runs + "\necho Kubernetes " + ver + "\n"
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // as a package upgrade does
			t.Fatal(err)
		}
	}
	count := func() int {
		b, _ := os.ReadFile(runs)
		return strings.Count(string(b), "run\n")
	}
	ask := func(want string, wantRuns int) {
		t.Helper()
		v, err := binaryVersion(context.Background(), path)
		if err != nil || v != want {
			t.Fatalf("binaryVersion = %q, %v; want %q", v, err, want)
		}
		if got := count(); got != wantRuns {
			t.Fatalf("the program ran %d times, want %d", got, wantRuns)
		}
	}
	write("v1.37.2")
	ask("v1.37.2", 1)
	ask("v1.37.2", 1) // remembered
	write("v1.37.10") // replaced: a new file
	ask("v1.37.10", 2)
	ask("v1.37.10", 2)
	// Rewritten in place with the same size: a new modification time.
	time.Sleep(20 * time.Millisecond)
	script, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(script), "v1.37.10", "v1.37.11", 1)), 0o755); err != nil {
		t.Fatal(err)
	}
	ask("v1.37.11", 3)
	// A program that fails is asked again every time.
	if err := os.WriteFile(path, []byte("#!/bin/sh\necho run >> "+runs+"\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := binaryVersion(context.Background(), path); err == nil {
			t.Fatal("a failing program gave a version")
		}
	}
	if got := count(); got != 5 {
		t.Fatalf("the failing program ran %d times, want 5 in all", got)
	}
}
