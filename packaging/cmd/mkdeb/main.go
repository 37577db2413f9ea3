// Command mkdeb builds ecom-agent's Debian packages with nfpm (see package
// deb) and prints the path of what it wrote.
//
//	mkdeb version -describe "$(git describe --tags --always --dirty)" [-revision 1]
//	mkdeb agent -version V -binary bin/ecom-agent -config packaging/config.toml -kube-version 1.37.2 -staging DIR -out out
//	mkdeb kube -version 1.37.2-1 -bin-dir /var/cache/ecom-agent-kube/v1.37.2 -staging DIR -out out
//	mkdeb containerd -version 2.4.2-1 -bin-dir /var/cache/ecom-agent-containerd/v2.4.2 -staging DIR -out out
//
// Every file's time is -mtime (Unix seconds), default $SOURCE_DATE_EPOCH:
// the commit time, so two builds of a commit give the same bytes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/ecom-platform/ecom-agent/packaging/deb"
)

const usage = `usage:
  mkdeb version -describe DESCRIBE [-mtime EPOCH] [-revision N]
  mkdeb agent -version V -binary PATH -config PATH -kube-version X.Y.Z [-modcache DIR] -staging DIR -out DIR [common flags]
  mkdeb kube -version V -bin-dir DIR -staging DIR -out DIR [common flags]
  mkdeb containerd -version V -bin-dir DIR -staging DIR -out DIR [common flags]
  mkdeb images -version V -image ARCHIVE... -staging DIR -out DIR [common flags]
  mkdeb platform-images -version V -image ARCHIVE... -staging DIR -out DIR [common flags]
common flags: -mtime EPOCH (default $SOURCE_DATE_EPOCH) -compression gzip|xz|zstd|none -maintainer M
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("no command")
	}
	fs := flag.NewFlagSet("mkdeb "+args[0], flag.ContinueOnError)
	var c deb.Common
	mtime := fs.String("mtime", os.Getenv("SOURCE_DATE_EPOCH"), "mtime of every file, Unix seconds")
	fs.StringVar(&c.Version, "version", "", "Debian version, with its revision")
	fs.StringVar(&c.Maintainer, "maintainer", deb.DefaultMaintainer, "Maintainer field")
	fs.StringVar(&c.Compression, "compression", "gzip", "data.tar compression: gzip[:LEVEL], xz, zstd[:LEVEL], none")
	fs.StringVar(&c.Staging, "staging", "", "scratch directory (emptied)")
	out := fs.String("out", "out", "directory the .deb is written to")
	describe := fs.String("describe", "", "version: output of git describe --tags --always --dirty")
	revision := fs.String("revision", "1", "version: Debian revision appended")
	binary := fs.String("binary", "", "agent: the ecom-agent binary")
	config := fs.String("config", "packaging/config.toml", "agent: the example config")
	kubeVersion := fs.String("kube-version", "", "agent: pinned Kubernetes version, X.Y.Z")
	modCache := fs.String("modcache", "", "agent: the Go module cache the binary was built from (default: go env GOMODCACHE)")
	var images []string
	fs.Func("image", "images, platform-images: an image archive to ship in "+deb.ImagesDir+" (repeatable)", func(v string) error {
		images = append(images, v)
		return nil
	})
	binDir := fs.String("bin-dir", "", "kube, containerd: directory of the binaries")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *mtime != "" {
		sec, err := strconv.ParseInt(*mtime, 10, 64)
		if err != nil {
			return fmt.Errorf("-mtime %q: %w", *mtime, err)
		}
		c.MTime = time.Unix(sec, 0).UTC()
	}
	var (
		path string
		err  error
	)
	switch args[0] {
	case "version":
		if c.MTime.IsZero() {
			return errors.New("version: -mtime or SOURCE_DATE_EPOCH (the commit time) is required")
		}
		v, err := deb.UpstreamVersion(*describe, c.MTime)
		if err != nil {
			return err
		}
		if *revision != "" {
			v += "-" + *revision
		}
		fmt.Println(v)
		return nil
	case "agent":
		path, err = deb.Agent{Common: c, Binary: *binary, Config: *config, KubeVersion: *kubeVersion, ModCache: *modCache}.Build(ctx, *out)
	case "images":
		path, err = deb.Images{Common: c, Archives: images}.Build(ctx, *out)
	case "platform-images":
		path, err = deb.PlatformImages{Common: c, Archives: images}.Build(ctx, *out)
	case "kube":
		path, err = deb.Kube{Common: c, BinDir: *binDir}.Build(ctx, *out)
	case "containerd":
		path, err = deb.Containerd{Common: c, BinDir: *binDir}.Build(ctx, *out)
	default:
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	if err != nil {
		return err
	}
	fmt.Println(path)
	return nil
}
