// Command mkimage builds ecom-agent's own container images as OCI image
// archives, for air-gapped nodes that cannot pull: the pause image
// containerd uses as its pod sandbox, the cluster DNS (CoreDNS) and the
// tests' echo server.
//
//	go run ./images/cmd/mkimage [-out out/images] [-only pause|echo|coredns] [-arch amd64]
//	                            [-pause-bin FILE] [-echo-bin FILE] [-coredns-bin FILE]
//
// It builds images/pause and images/echo, and CoreDNS in the module
// images/coredns, with `go build` (CGO_ENABLED=0 -trimpath
// -buildvcs=false -ldflags='-s -w', into a temporary directory), or takes
// prebuilt binaries, and writes <out>/pause.tar, <out>/coredns.tar and <out>/echo.tar
// atomically (a temporary file renamed). Rebuilt from the same sources
// with the same Go, the archives are byte-identical. Their times are
// $SOURCE_DATE_EPOCH, or the Unix epoch when it is unset.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ecom-platform/ecom-agent/images"
	"github.com/ecom-platform/ecom-agent/images/internal/gobuild"
	"github.com/ecom-platform/ecom-agent/images/oci"
)

// pkgPath is the import path of the programs' parent directory.
const pkgPath = "github.com/ecom-platform/ecom-agent/images/"

// target is one image mkimage can build.
type target struct {
	name    string // program and flag name: pause, echo, coredns
	archive string
	image   func(binary []byte, arch string, created time.Time) oci.Image
	// module is the directory of the module to build pkg in, relative to
	// the repository; "" for the agent's own module.
	module, pkg string
}

var targets = []target{
	{"pause", images.PauseArchive, images.Pause, "", pkgPath + "pause"},
	{"echo", images.EchoArchive, images.Echo, "", pkgPath + "echo"},
	// CoreDNS from its own module, a tool dependency of images/coredns.
	{"coredns", images.CoreDNSArchive, images.CoreDNS, "images/coredns", "github.com/coredns/coredns"},
	{"local-path", images.LocalPathArchive, images.LocalPath, "images/local-path", "github.com/rancher/local-path-provisioner"},
	{"volume-helper", images.VolumeHelperArchive, images.VolumeHelper, "", pkgPath + "volume-helper"},
	{"metrics-server", images.MetricsServerArchive, images.MetricsServer, "images/metrics-server", "sigs.k8s.io/metrics-server/cmd/metrics-server"},
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "out/images", "output directory")
	only := fs.String("only", "", "build only this image: one of "+names())
	repo := fs.String("repo", ".", "the repository's root directory, where modules of other images are")
	arch := fs.String("arch", runtime.GOARCH, "GOARCH of the binaries and the images (linux only)")
	goCmd := fs.String("go", goCommand(), "go command to build with (default $GO or go)")
	bins := map[string]*string{}
	for _, t := range targets {
		bins[t.name] = fs.String(t.name+"-bin", "", "prebuilt static "+t.name+" binary (skips go build)")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var todo []target
	for _, t := range targets {
		if *only == "" || *only == t.name {
			todo = append(todo, t)
		}
	}
	if len(todo) == 0 {
		return fmt.Errorf("-only %q: want one of %s", *only, names())
	}
	created, err := oci.SourceDateEpoch()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}

	var tmp string
	for _, t := range todo {
		if *bins[t.name] == "" && tmp == "" {
			if tmp, err = os.MkdirTemp("", "mkimage-"); err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
		}
	}
	for _, t := range todo {
		bin := *bins[t.name]
		if bin == "" {
			bin = filepath.Join(tmp, t.name)
			dir := ""
			if t.module != "" {
				dir = filepath.Join(*repo, t.module)
			}
			if err := gobuild.Build(*goCmd, *arch, dir, t.pkg, bin, stderr); err != nil {
				return err
			}
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			return err
		}
		img := t.image(data, *arch, created)
		file := filepath.Join(*out, t.archive)
		if err := oci.WriteFile(file, img); err != nil {
			return err
		}
		digest, err := oci.ManifestDigest(img)
		if err != nil {
			return err
		}
		st, err := os.Stat(file)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s %s (binary %d bytes, archive %d bytes)\n", file, img.Name, digest, len(data), st.Size())
	}
	return nil
}

// names lists the targets' names, for messages.
func names() string {
	var n []string
	for _, t := range targets {
		n = append(n, t.name)
	}
	return strings.Join(n, ", ")
}

// goCommand is $GO (the Makefile's variable, when exported) or "go".
func goCommand() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}
