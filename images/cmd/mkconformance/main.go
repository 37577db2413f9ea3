// Command mkconformance writes the images the upstream conformance suite
// runs (package images/conformance) as image archives, one per name, for
// air-gapped test hosts. tools/e2e/images.sh runs it with what it built:
//
//	go run ./images/cmd/mkconformance -bin-dir DIR -roots DIR -kube-src DIR -out DIR
//
// -bin-dir holds agnhost and sample-apiserver (tools/e2e/build.sh), -roots
// the Debian roots agnhost.tar, busybox.tar and nginx.tar, -kube-src the
// k8s.io/kubernetes module's directory (agnhost's certificate, kitten's
// and nautilus's pages). The pause, etcd and CoreDNS programs are built
// here from this repository's modules. Archives are written atomically;
// their times are $SOURCE_DATE_EPOCH (the Unix epoch when unset).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/ecom-platform/ecom-agent/images/conformance"
	"github.com/ecom-platform/ecom-agent/images/internal/gobuild"
	"github.com/ecom-platform/ecom-agent/images/oci"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkconformance:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkconformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	binDir := fs.String("bin-dir", "", "directory with agnhost and sample-apiserver (tools/e2e/build.sh prints it)")
	roots := fs.String("roots", "", "directory with the Debian roots agnhost.tar, busybox.tar, nginx.tar")
	kubeSrc := fs.String("kube-src", "", "the k8s.io/kubernetes module's directory")
	out := fs.String("out", "", "output directory")
	repo := fs.String("repo", ".", "this repository's root (for images/coredns)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *binDir == "" || *roots == "" || *kubeSrc == "" || *out == "" || fs.NArg() > 0 {
		return fmt.Errorf("usage: mkconformance -bin-dir DIR -roots DIR -kube-src DIR -out DIR")
	}
	created, err := oci.SourceDateEpoch()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mkconformance-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	built := map[string]string{}
	for _, b := range []struct{ name, dir, pkg string }{
		{"pause", *repo, "./images/pause"},
		{"etcd", *repo, "./images/etcd"},
		{"coredns", filepath.Join(*repo, "images/coredns"), "github.com/coredns/coredns"},
	} {
		built[b.name] = filepath.Join(tmp, b.name)
		if err := gobuild.Build("go", runtime.GOARCH, b.dir, b.pkg, built[b.name], stderr); err != nil {
			return err
		}
	}
	var errs []error
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
		}
		return b
	}
	img := filepath.Join(*kubeSrc, "test/images")
	in := conformance.Inputs{
		Arch: runtime.GOARCH, Created: created,
		Agnhost: read(filepath.Join(*binDir, "agnhost")), SampleAPIServer: read(filepath.Join(*binDir, "sample-apiserver")),
		Pause: read(built["pause"]), Etcd: read(built["etcd"]), CoreDNS: read(built["coredns"]),
		AgnhostRoot: read(filepath.Join(*roots, "agnhost.tar")), BusyBoxRoot: read(filepath.Join(*roots, "busybox.tar")),
		NginxRoot:    read(filepath.Join(*roots, "nginx.tar")),
		LocalhostCrt: read(filepath.Join(img, "agnhost/porter/localhost.crt")), LocalhostKey: read(filepath.Join(img, "agnhost/porter/localhost.key")),
		KittenJPG: read(filepath.Join(img, "kitten/html/kitten.jpg")), KittenJSON: read(filepath.Join(img, "kitten/html/data.json")),
		NautilusJPG: read(filepath.Join(img, "nautilus/html/nautilus.jpg")), NautilusJSON: read(filepath.Join(img, "nautilus/html/data.json")),
	}
	if len(errs) > 0 {
		return fmt.Errorf("inputs: %v", errs)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, a := range conformance.Images(in) {
		file := filepath.Join(*out, a.File)
		if err := oci.WriteFile(file, a.Image); err != nil {
			return fmt.Errorf("%s: %w", a.Image.Name, err)
		}
		st, err := os.Stat(file)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s (%d MB)\n", file, a.Image.Name, st.Size()>>20)
	}
	return nil
}
