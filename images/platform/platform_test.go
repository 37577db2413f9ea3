package platform

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ecom-platform/ecom-agent/images/internal/ocicheck"
	"github.com/ecom-platform/ecom-agent/images/oci"
)

func inputs(t *testing.T) Inputs {
	in := Inputs{
		Arch: "amd64", Roots: map[string][]byte{},
		Prometheus: []byte("\x7fELF prom"), KubeStateMetrics: []byte("\x7fELF ksm"), LogShipper: []byte("\x7fELF ls"),
		PostgreSQLEntrypoint: []byte("#!/bin/bash\n"),
		Backend:              map[string][]byte{"ecom_backend/__init__.py": []byte(""), "ecom_backend/app.py": []byte("app = 1\n")},
		Frontend:             map[string][]byte{"index.html": []byte("<html>"), "entrypoint.sh": []byte("#!/bin/sh\n"), "nginx.conf.template": []byte("events {}\n")},
	}
	for _, d := range Debian {
		in.Roots[d.Root] = ocicheck.RootTar(t, "./usr/bin/"+d.Package)
	}
	return in
}

// Every image writes a valid archive under its name, with the seeded
// manifests' users, and the apps' files where the entrypoints look.
func TestImages(t *testing.T) {
	archives, err := Images(inputs(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	users := map[string]string{}
	for _, a := range archives {
		names = append(names, a.Image.Name)
		users[a.Image.Name] = a.Image.Config.User
		var buf bytes.Buffer
		if err := oci.Write(&buf, a.Image); err != nil {
			t.Fatalf("%s: %v", a.Image.Name, err)
		}
		arc, err := ocicheck.Check(buf.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", a.Image.Name, err)
		}
		if arc.Name() != a.Image.Name {
			t.Errorf("%s: archive names %q", a.File, arc.Name())
		}
		if !strings.HasSuffix(a.File, ".tar") || strings.Contains(a.File, "/") {
			t.Errorf("%s: file %q", a.Image.Name, a.File)
		}
	}
	want := []string{PostgreSQLImage, RedisImage, BackendImage, FrontendImage, PrometheusImage, AlertmanagerImage,
		PostgresExporterImage, KubeStateMetricsImage, LogShipperImage}
	slices.Sort(want)
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("images %v, want %v", names, want)
	}
	// The users the seeded pods run as (runAsUser), so a pod without a
	// security context runs as the same user.
	for img, u := range map[string]string{PostgreSQLImage: "999:999", RedisImage: "999:999", BackendImage: "10001:10001", FrontendImage: "101:101", PrometheusImage: "65534:65534"} {
		if users[img] != u {
			t.Errorf("%s runs as %q, want %q", img, users[img], u)
		}
	}
	for _, a := range archives {
		switch a.Image.Name {
		case BackendImage:
			if !slices.ContainsFunc(a.Image.Files, func(f oci.File) bool { return f.Path == BackendDir+"/ecom_backend/app.py" }) {
				t.Errorf("the backend's code is not in %s: %v", BackendDir, a.Image.Files)
			}
		case FrontendImage:
			if !slices.ContainsFunc(a.Image.Files, func(f oci.File) bool { return f.Path == FrontendEntrypoint && f.Mode&0o111 != 0 }) {
				t.Errorf("the frontend's entrypoint is not %s, executable", FrontendEntrypoint)
			}
		}
	}
}

func TestMissingInputs(t *testing.T) {
	in := inputs(t)
	delete(in.Roots, "redis.tar")
	if _, err := Images(in); err == nil || !strings.Contains(err.Error(), "redis.tar") {
		t.Errorf("a missing root: %v", err)
	}
	in = inputs(t)
	in.LogShipper = nil
	if _, err := Images(in); err == nil {
		t.Error("a missing program made images")
	}
}

func TestCheckVersions(t *testing.T) {
	var ok []string
	for _, d := range Debian {
		ok = append(ok, strings.TrimSuffix(d.Root, ".tar")+" "+d.Package+" "+d.Version+"9-1")
	}
	if err := CheckVersions(strings.Join(ok, "\n")); err != nil {
		t.Errorf("matching versions: %v", err)
	}
	moved := strings.Replace(strings.Join(ok, "\n"), "postgresql postgresql-15 15.", "postgresql postgresql-15 16.", 1)
	if err := CheckVersions(moved); err == nil || !strings.Contains(err.Error(), "change the tag") {
		t.Errorf("a moved version: %v", err)
	}
	if err := CheckVersions(strings.Join(ok[1:], "\n")); err == nil {
		t.Error("a missing package passed")
	}
}

// The tags follow the modules they are built from, and the seeded
// manifests run these images, named from @@IMAGE_REGISTRY@@.
func TestSeededManifestsRunTheImages(t *testing.T) {
	gomod, err := os.ReadFile("../kube-state-metrics/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(gomod), "k8s.io/kube-state-metrics/v2 v"+KubeStateMetricsVersion+" ") {
		t.Errorf("images/kube-state-metrics does not build %s", KubeStateMetricsVersion)
	}
	gomod, err = os.ReadFile("../prometheus/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	// Prometheus 3.X.Y is the module's v0.3XX.Y.
	var major, minor, patch int
	if _, err := fmt.Sscanf(PrometheusVersion, "%d.%d.%d", &major, &minor, &patch); err != nil {
		t.Fatal(err)
	}
	if mod := fmt.Sprintf("github.com/prometheus/prometheus v0.%d%02d.%d ", major, minor, patch); !strings.Contains(string(gomod), mod) {
		t.Errorf("images/prometheus does not build Prometheus %s (%s)", PrometheusVersion, strings.TrimSpace(mod))
	}
	files, err := filepath.Glob("../../seed/manifests/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var all string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all += string(b)
	}
	for _, img := range []string{PostgreSQLImage, RedisImage, BackendImage, FrontendImage, PrometheusImage, AlertmanagerImage,
		PostgresExporterImage, KubeStateMetricsImage, LogShipperImage} {
		if !strings.Contains(all, "image: @@IMAGE_REGISTRY@@"+strings.TrimPrefix(img, Registry)+"\n") {
			t.Errorf("no seeded manifest runs %s", img)
		}
	}
}

// archiveSums writes every archive of Images(in) as oci.Write does and
// returns each file's sha256.
func archiveSums(t *testing.T, in Inputs) map[string]string {
	t.Helper()
	archives, err := Images(in)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, a := range archives {
		var buf bytes.Buffer
		if err := oci.Write(&buf, a.Image); err != nil {
			t.Fatalf("%s: %v", a.Image.Name, err)
		}
		if _, dup := sums[a.File]; dup {
			t.Fatalf("two images write %s", a.File)
		}
		sums[a.File] = fmt.Sprintf("%x", sha256.Sum256(buf.Bytes()))
	}
	return sums
}

// The same inputs give the same bytes, archive by archive (the apps'
// files come from maps, whose order differs from run to run), and an
// input changes its own image's archive and no other. The layers' gzip is
// memoised within a process, so a second run here compresses nothing
// again; images/oci's TestGzipDeterministic covers compress/gzip itself,
// and `make platform-repro` the whole build from Debian's mirror on.
func TestImagesAreReproducible(t *testing.T) {
	first := archiveSums(t, inputs(t))
	if len(first) != 9 {
		t.Fatalf("%d archives, want 9: %v", len(first), first)
	}
	second := archiveSums(t, inputs(t))
	for file, sum := range first {
		if second[file] != sum {
			t.Errorf("%s: two builds from the same inputs differ: %s, %s", file, sum, second[file])
		}
	}
	for _, tc := range []struct {
		name, file string
		change     func(*Inputs)
	}{
		{"one byte of the backend's app.py", "ecommerce-backend.tar", func(in *Inputs) { in.Backend["ecom_backend/app.py"][0] ^= 1 }},
		{"the storefront's page", "ecommerce-frontend.tar", func(in *Inputs) { in.Frontend["index.html"] = []byte("<html>\n") }},
		{"a file of Redis's root", "redis.tar", func(in *Inputs) {
			in.Roots["redis.tar"] = ocicheck.RootTar(t, "./usr/bin/redis-server", "./etc/redis.conf")
		}},
		{"the log shipper's binary", "log-shipper.tar", func(in *Inputs) { in.LogShipper = []byte("\x7fELF ls2") }},
	} {
		in := inputs(t)
		tc.change(&in)
		changed := archiveSums(t, in)
		for file, sum := range first {
			switch {
			case file == tc.file && changed[file] == sum:
				t.Errorf("%s did not change %s", tc.name, file)
			case file != tc.file && changed[file] != sum:
				t.Errorf("%s changed %s too", tc.name, file)
			}
		}
		if _, ok := first[tc.file]; !ok {
			t.Errorf("no archive %s", tc.file)
		}
	}
}
