// Command mkplatform writes the images of the e-commerce platform
// (package images/platform) as image archives, one per image, for
// air-gapped nodes. tools/platform/images.sh runs it with the Debian roots
// tools/platform/roots.sh made:
//
//	go run ./images/cmd/mkplatform -roots DIR -out DIR [-repo .]
//
// It builds kube-state-metrics (module images/kube-state-metrics) and the
// log shipper (module images/log-shipper) with go build, reads the apps in
// platform/backend and platform/frontend and the PostgreSQL entrypoint,
// checks the roots' package versions against the tags, and writes the
// archives atomically; their times are $SOURCE_DATE_EPOCH (the Unix epoch
// when unset), so the same inputs give the same bytes.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/ecom-platform/ecom-agent/images/internal/gobuild"
	"github.com/ecom-platform/ecom-agent/images/oci"
	"github.com/ecom-platform/ecom-agent/images/platform"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mkplatform:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("mkplatform", flag.ContinueOnError)
	fset.SetOutput(stderr)
	roots := fset.String("roots", "", "directory with the Debian roots and packages.txt (tools/platform/roots.sh prints it)")
	out := fset.String("out", "", "output directory")
	repo := fset.String("repo", ".", "this repository's root")
	goCmd := fset.String("go", "go", "go command to build with")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *roots == "" || *out == "" || fset.NArg() > 0 {
		return fmt.Errorf("usage: mkplatform -roots DIR -out DIR [-repo DIR]")
	}
	created, err := oci.SourceDateEpoch()
	if err != nil {
		return err
	}
	pkgs, err := os.ReadFile(filepath.Join(*roots, "packages.txt"))
	if err != nil {
		return err
	}
	if err := platform.CheckVersions(string(pkgs)); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mkplatform-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, b := range []struct {
		name, module, pkg string
		tags              []string
	}{
		{"prometheus", "images/prometheus", "github.com/prometheus/prometheus/cmd/prometheus", platform.PrometheusTags},
		{"kube-state-metrics", "images/kube-state-metrics", "k8s.io/kube-state-metrics/v2", nil},
		{"log-shipper", "images/log-shipper", ".", nil},
	} {
		if err := gobuild.BuildTags(*goCmd, runtime.GOARCH, filepath.Join(*repo, b.module), b.pkg, filepath.Join(tmp, b.name), b.tags, stderr); err != nil {
			return err
		}
	}
	in := platform.Inputs{Arch: runtime.GOARCH, Created: created, Roots: map[string][]byte{}}
	for _, d := range platform.Debian {
		if in.Roots[d.Root], err = os.ReadFile(filepath.Join(*roots, d.Root)); err != nil {
			return err
		}
	}
	if in.Prometheus, err = os.ReadFile(filepath.Join(tmp, "prometheus")); err != nil {
		return err
	}
	if in.KubeStateMetrics, err = os.ReadFile(filepath.Join(tmp, "kube-state-metrics")); err != nil {
		return err
	}
	if in.LogShipper, err = os.ReadFile(filepath.Join(tmp, "log-shipper")); err != nil {
		return err
	}
	if in.PostgreSQLEntrypoint, err = os.ReadFile(filepath.Join(*repo, "platform/postgresql/entrypoint.sh")); err != nil {
		return err
	}
	if in.Backend, err = appFiles(filepath.Join(*repo, "platform/backend"), "ecom_backend/"); err != nil {
		return err
	}
	if in.Frontend, err = appFiles(filepath.Join(*repo, "platform/frontend"), ""); err != nil {
		return err
	}
	archives, err := platform.Images(in)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	// One archive per core at a time: compressing the roots is most of
	// the work, and gzip uses one core.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, runtime.NumCPU())
	for _, a := range archives {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			file := filepath.Join(*out, a.File)
			err := oci.WriteFile(file, a.Image)
			var st os.FileInfo
			if err == nil {
				st, err = os.Stat(file)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", a.Image.Name, err))
				return
			}
			fmt.Fprintf(stdout, "%s: %s (%d MB)\n", file, a.Image.Name, st.Size()>>20)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// appFiles reads an app's files under dir whose relative paths start with
// prefix, leaving out tests, caches and documentation.
func appFiles(dir, prefix string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "tests" || d.Name() == "__pycache__" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(rel, prefix) || strings.HasSuffix(rel, ".md") || strings.HasPrefix(d.Name(), "test") || strings.HasSuffix(rel, ".pyc") {
			return nil
		}
		files[rel], err = os.ReadFile(p)
		return err
	})
	if err == nil && len(files) == 0 {
		err = fmt.Errorf("no files in %s", dir)
	}
	return files, err
}
