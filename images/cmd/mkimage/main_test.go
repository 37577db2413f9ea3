package main

import (
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/images"
	"github.com/ecom-platform/ecom-agent/images/internal/ocicheck"
)

func check(t *testing.T, file, wantName string) *ocicheck.Archive {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ocicheck.Check(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if a.Name() != wantName {
		t.Errorf("%s: name %q, want %q", file, a.Name(), wantName)
	}
	return a
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestPrebuilt(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	bins := t.TempDir()
	var args []string
	for _, tg := range targets {
		bin := filepath.Join(bins, tg.name)
		if err := os.WriteFile(bin, []byte(tg.name+" binary"), 0o755); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-"+tg.name+"-bin", bin)
	}
	pauseBin, echoBin := filepath.Join(bins, "pause"), filepath.Join(bins, "echo")
	out := filepath.Join(t.TempDir(), "a", "b")
	var stdout bytes.Buffer
	args = append(args, "-out", out, "-go", "/nonexistent/go")
	if err := run(args, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := "coredns.tar echo.tar local-path-provisioner.tar metrics-server.tar pause.tar volume-helper.tar"
	if got := dirNames(t, out); strings.Join(got, " ") != want {
		t.Errorf("out holds %q", got)
	}
	for _, tc := range []struct{ archive, image, file, user string }{
		{images.LocalPathArchive, images.LocalPathImage, "local-path-provisioner", images.LocalPathUser},
		{images.VolumeHelperArchive, images.VolumeHelperImage, "volume-helper", images.VolumeHelperUser},
		{images.MetricsServerArchive, images.MetricsServerImage, "metrics-server", images.MetricsServerUser},
	} {
		a := check(t, filepath.Join(out, tc.archive), tc.image)
		if f, ok := a.LayerFile(tc.file); !ok || f.Mode != 0o755 || !strings.HasSuffix(string(f.Content), " binary") {
			t.Errorf("%s layer %+v", tc.archive, a.Layer)
		}
		if a.Config.Config.User != tc.user || strings.Join(a.Config.Config.Entrypoint, " ") != "/"+tc.file {
			t.Errorf("%s config %+v", tc.archive, a.Config.Config)
		}
	}
	c := check(t, filepath.Join(out, images.CoreDNSArchive), images.CoreDNSImage)
	if f, ok := c.LayerFile("coredns"); !ok || string(f.Content) != "coredns binary" || f.Mode != 0o755 {
		t.Errorf("coredns layer %+v", c.Layer)
	}
	if c.Config.Config.User != images.CoreDNSUser || len(c.Config.Config.Entrypoint) != 1 || c.Config.Config.Entrypoint[0] != "/coredns" {
		t.Errorf("coredns config %+v", c.Config.Config)
	}
	p := check(t, filepath.Join(out, images.PauseArchive), images.PauseImage)
	if e, ok := p.LayerFile("pause"); !ok || string(e.Content) != "pause binary" || e.Mode != 0o755 {
		t.Errorf("pause layer %+v", p.Layer)
	}
	e := check(t, filepath.Join(out, images.EchoArchive), images.EchoImage)
	if f, ok := e.LayerFile("echo"); !ok || string(f.Content) != "echo binary" {
		t.Errorf("echo layer %+v", e.Layer)
	}
	if p.Config.Created != "1970-01-01T00:00:00Z" || p.Config.Architecture != runtime.GOARCH {
		t.Errorf("config created %q arch %q", p.Config.Created, p.Config.Architecture)
	}
	if !strings.Contains(stdout.String(), images.PauseImage+" "+p.ManifestDesc.Digest) {
		t.Errorf("stdout %q lacks the pause manifest digest", stdout.String())
	}

	// Again, with -only: the same bytes, and only that file rewritten.
	before, _ := os.ReadFile(filepath.Join(out, images.EchoArchive))
	os.Remove(filepath.Join(out, images.PauseArchive))
	if err := run([]string{"-out", out, "-only", "echo", "-echo-bin", echoBin}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(out, images.EchoArchive))
	if !bytes.Equal(before, after) {
		t.Error("rebuilt echo.tar differs")
	}
	for _, a := range []string{images.CoreDNSArchive, images.LocalPathArchive, images.MetricsServerArchive, images.VolumeHelperArchive} {
		os.Remove(filepath.Join(out, a))
	}
	if got := dirNames(t, out); strings.Join(got, " ") != "echo.tar" {
		t.Errorf("-only echo: out holds %q", got)
	}

	// SOURCE_DATE_EPOCH dates the image.
	t.Setenv("SOURCE_DATE_EPOCH", "1764496800")
	if err := run([]string{"-out", out, "-only", "pause", "-pause-bin", pauseBin, "-arch", "arm64"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	p = check(t, filepath.Join(out, images.PauseArchive), images.PauseImage)
	if want := time.Unix(1764496800, 0).UTC().Format(time.RFC3339); p.Config.Created != want || p.Config.Architecture != "arm64" {
		t.Errorf("created %q (want %q), arch %q", p.Config.Created, want, p.Config.Architecture)
	}
}

func TestBadArgs(t *testing.T) {
	out := t.TempDir()
	for _, args := range [][]string{
		{"-out", out, "-only", "busybox"},
		{"-out", out, "extra"},
		{"-out", out, "-pause-bin", filepath.Join(out, "missing"), "-only", "pause"},
	} {
		if err := run(args, io.Discard, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	if got := dirNames(t, out); len(got) != 0 {
		t.Errorf("out holds %q after failures", got)
	}
}

// TestBuild builds the agent's own programs as `make images` does,
// twice: the archives are byte-identical, the binaries static. (CoreDNS,
// local-path-provisioner and metrics-server, far larger builds from
// their own modules, are built by `make images` and run by the e2e suite;
// here stand-in binaries.)
func TestBuild(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	if testing.Short() {
		t.Skip("builds two programs twice (-short)")
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	first, second := t.TempDir(), t.TempDir()
	stand := filepath.Join(t.TempDir(), "stand-in")
	if err := os.WriteFile(stand, []byte("stand-in"), 0o755); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, tg := range targets {
		if tg.module != "" {
			args = append(args, "-"+tg.name+"-bin", stand)
		}
	}
	for _, out := range []string{first, second} {
		if err := run(append([]string{"-out", out}, args...), io.Discard, os.Stderr); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ file, name, bin string }{
		{images.PauseArchive, images.PauseImage, "pause"},
		{images.EchoArchive, images.EchoImage, "echo"},
		{images.VolumeHelperArchive, images.VolumeHelperImage, "volume-helper"},
	} {
		a1, _ := os.ReadFile(filepath.Join(first, tc.file))
		a2, _ := os.ReadFile(filepath.Join(second, tc.file))
		if !bytes.Equal(a1, a2) {
			t.Errorf("%s: two builds differ", tc.file)
		}
		a := check(t, filepath.Join(first, tc.file), tc.name)
		f, ok := a.LayerFile(tc.bin)
		if !ok || f.Mode != 0o755 {
			t.Fatalf("%s: layer %+v", tc.file, a.Layer)
		}
		t.Logf("%s: binary %d bytes, archive %d bytes, manifest %s", tc.file, len(f.Content), len(a1), a.ManifestDesc.Digest)
		static(t, tc.bin, f.Content)
		if tc.bin == "pause" && len(f.Content) > 2<<20 {
			t.Errorf("pause is %d bytes, want it under 2 MiB", len(f.Content))
		}
	}
}

// static fails unless bin is an ELF executable without an interpreter or
// shared libraries (CGO_ENABLED=0) and without symbols (-s -w).
func static(t *testing.T, name string, bin []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: dynamically linked (%v)", name, p.Type)
		}
	}
	if syms, err := f.Symbols(); err == nil && len(syms) > 0 {
		t.Errorf("%s: %d symbols, want a stripped binary", name, len(syms))
	}
	if s := f.Section(".debug_info"); s != nil {
		t.Errorf("%s: has DWARF", name)
	}
}
