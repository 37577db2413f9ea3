package conformance

import (
	"bytes"
	"slices"
	"testing"

	"github.com/ecom-platform/ecom-agent/images/internal/ocicheck"
	"github.com/ecom-platform/ecom-agent/images/oci"
)

// The names are what k8s.io/kubernetes v1.37.2's
// test/utils/image/manifest.go gives the images of the conformance specs
// (e2e.test --list-images): a spec whose image has another name finds
// nothing on the air-gapped nodes.
var wantNames = []string{
	"registry.k8s.io/e2e-test-images/agnhost:2.66.1",
	"registry.k8s.io/e2e-test-images/agnhost:2.55",
	"registry.k8s.io/e2e-test-images/kitten:1.8",
	"registry.k8s.io/e2e-test-images/nautilus:1.8",
	"registry.k8s.io/e2e-test-images/busybox:1.37.0-2",
	"registry.k8s.io/e2e-test-images/busybox:1.36.1-1",
	"registry.k8s.io/e2e-test-images/nginx:1.27.0-2",
	"registry.k8s.io/e2e-test-images/nginx:1.28.0-2",
	"registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1",
	"registry.k8s.io/e2e-test-images/nonroot:1.5",
	"registry.k8s.io/pause:3.10.2",
	"registry.k8s.io/etcd:3.7.0-0",
	"registry.k8s.io/e2e-test-images/sample-apiserver:1.29.2",
}

func TestImages(t *testing.T) {
	bin := []byte("\x7fELF")
	in := Inputs{
		Arch: "amd64", Agnhost: bin, SampleAPIServer: bin, Etcd: bin, Pause: bin, CoreDNS: bin,
		AgnhostRoot: ocicheck.RootTar(t, "./bin/bash", "./usr/bin/dig"), BusyBoxRoot: ocicheck.RootTar(t, "./bin/busybox"), NginxRoot: ocicheck.RootTar(t, "./usr/sbin/nginx"),
		LocalhostCrt: []byte("crt"), LocalhostKey: []byte("key"),
		KittenJPG: []byte("k"), KittenJSON: []byte("{}"), NautilusJPG: []byte("n"), NautilusJSON: []byte("{}"),
	}
	var names, files []string
	for _, a := range Images(in) {
		names = append(names, a.Image.Name)
		files = append(files, a.File)
		var buf bytes.Buffer
		if err := oci.Write(&buf, a.Image); err != nil {
			t.Fatalf("%s: %v", a.Image.Name, err)
		}
		arch, err := ocicheck.Check(buf.Bytes())
		if err != nil {
			t.Errorf("%s: %v", a.Image.Name, err)
			continue
		}
		if arch.Name() != a.Image.Name {
			t.Errorf("archive %s names %s", a.File, arch.Name())
		}
	}
	if !slices.Equal(names, wantNames) {
		t.Errorf("images %q,\nwant %q", names, wantNames)
	}
	slices.Sort(files)
	if len(slices.Compact(files)) != len(wantNames) {
		t.Errorf("archive files not one per image: %q", files)
	}
}

// agnhost is laid out as upstream's Dockerfile lays it out: the specs run
// /agnhost, /agnhost-2 and /coredns and read /localhost.crt.
func TestAgnhostLayout(t *testing.T) {
	img := agnhost(Inputs{Agnhost: []byte("a")}, "agnhost:2.66.1", nil, []string{"pause"})
	var paths []string
	for _, f := range img.Files {
		paths = append(paths, f.Path)
	}
	for _, want := range []string{"/agnhost", "/agnhost-2", "/coredns", "/localhost.crt", "/localhost.key", "/uploads"} {
		if !slices.Contains(paths, want) {
			t.Errorf("agnhost lacks %s", want)
		}
	}
	if !slices.Equal(img.Config.Entrypoint, []string{"/agnhost"}) || !slices.Equal(img.Config.Cmd, []string{"pause"}) {
		t.Errorf("agnhost runs %q %q", img.Config.Entrypoint, img.Config.Cmd)
	}
}
