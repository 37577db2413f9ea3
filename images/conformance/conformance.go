// Package conformance defines the images the upstream Kubernetes
// conformance suite runs, built here for air-gapped test hosts under the
// exact names k8s.io/kubernetes/test/utils/image/manifest.go gives them
// (the suite pulls nothing; each name must already be on every node).
//
// What each is built from (tools/e2e/images.sh makes the inputs):
//   - agnhost (2.66.1, and 2.55, the suite's "previous" agnhost, the same
//     build): the agnhost program from the pinned k8s.io/kubernetes module
//     above a Debian root with the tools upstream's Alpine image carries
//     (bash, curl, dig, netcat, iproute2, iperf, socat, ping), its
//     localhost.crt/localhost.key, /agnhost-2, /coredns (the cluster DNS
//     build of images/coredns), and the user and group the security
//     context tests expect (user-defined-in-image 1000, group 50000).
//   - kitten and nautilus (1.8): agnhost with their pages, as upstream.
//   - busybox (1.37.0-2 and 1.36.1-1): Debian 13's busybox-static with
//     its applets linked in /bin, and bash-static as sh (busybox's ash
//     drops environment variables with names that are no identifiers,
//     which specs read with `sh -c env`).
//   - nginx (1.27.0-2 and 1.28.0-2): Debian's nginx in the foreground,
//     logging to the container's output.
//   - glibc-dns-testing (2.1.1): the agnhost root (Debian with dig and
//     getent) and /coredns, as upstream's bookworm-slim one; nonroot
//     (1.5): the same root run as uid 1234.
//   - pause (3.10.2): ecom-agent's pause program.
//   - etcd (3.7.0-0): etcd's server from the etcd module the agent pins,
//     as /usr/local/bin/etcd; sample-apiserver (1.29.2): the pinned
//     k8s.io/sample-apiserver.
//
// The versions inside differ from the tags (Debian 12's nginx,
// the agent's etcd): the tags are what the suite asks for, the contents
// what it needs. docs/conformance.md lists this.
package conformance

import (
	"io/fs"
	"time"

	"github.com/ecom-platform/ecom-agent/images"
	"github.com/ecom-platform/ecom-agent/images/oci"
)

// Registries of manifest.go.
const (
	e2eRegistry = "registry.k8s.io/e2e-test-images/"
	gcRegistry  = "registry.k8s.io/"
)

// Inputs are what the images are made of.
type Inputs struct {
	Arch    string
	Created time.Time
	// Static binaries.
	Agnhost, SampleAPIServer, Etcd, Pause, CoreDNS []byte
	// Debian roots, uncompressed tars (tools/e2e/images.sh).
	AgnhostRoot, BusyBoxRoot, NginxRoot []byte
	// From the k8s.io/kubernetes module's test/images: agnhost/porter's
	// certificate and key, kitten's and nautilus's html.
	LocalhostCrt, LocalhostKey         []byte
	KittenJPG, NautilusJPG, KittenJSON []byte
	NautilusJSON                       []byte
}

// Archive is one image and its archive's file name.
type Archive struct {
	File  string
	Image oci.Image
}

// Images returns every image, one archive per name.
func Images(in Inputs) []Archive {
	var out []Archive
	add := func(file string, img oci.Image) {
		img.Architecture, img.Created = in.Arch, in.Created
		out = append(out, Archive{File: file, Image: img})
	}
	for _, tag := range []string{"2.66.1", "2.55"} {
		add("agnhost-"+tag+".tar", agnhost(in, "agnhost:"+tag, nil, []string{"pause"}))
	}
	add("kitten-1.8.tar", agnhost(in, "kitten:1.8", []oci.File{
		{Path: "/kitten.jpg", Mode: 0o644, Content: in.KittenJPG},
		{Path: "/data.json", Mode: 0o644, Content: in.KittenJSON},
	}, []string{"test-webserver"}))
	add("nautilus-1.8.tar", agnhost(in, "nautilus:1.8", []oci.File{
		{Path: "/nautilus.jpg", Mode: 0o644, Content: in.NautilusJPG},
		{Path: "/data.json", Mode: 0o644, Content: in.NautilusJSON},
	}, []string{"test-webserver"}))
	for _, tag := range []string{"1.37.0-2", "1.36.1-1"} {
		add("busybox-"+tag+".tar", oci.Image{
			Name:   e2eRegistry + "busybox:" + tag,
			Base:   in.BusyBoxRoot,
			Files:  []oci.File{{Path: "/etc/ecom-agent-image", Mode: 0o644, Content: []byte("busybox from Debian's busybox-static, sh from bash-static, built by ecom-agent\n")}},
			Config: oci.Config{Cmd: []string{"sh"}, Env: []string{pathEnv}},
		})
	}
	for _, tag := range []string{"1.27.0-2", "1.28.0-2"} {
		add("nginx-"+tag+".tar", oci.Image{
			Name:  e2eRegistry + "nginx:" + tag,
			Base:  in.NginxRoot,
			Files: []oci.File{{Path: "/etc/ecom-agent-image", Mode: 0o644, Content: []byte("nginx from Debian's nginx, built by ecom-agent\n")}},
			Config: oci.Config{
				Entrypoint: []string{"nginx", "-g", "daemon off;"}, Env: []string{pathEnv},
				ExposedPorts: []string{"80/tcp"}, Labels: map[string]string{"org.opencontainers.image.title": "nginx"},
			},
		})
	}
	// The DNS specs' glibc querier: Debian with dig and getent, and
	// /coredns, as upstream's (on bookworm-slim).
	add("glibc-dns-testing-2.1.1.tar", oci.Image{
		Name:   e2eRegistry + "glibc-dns-testing:2.1.1",
		Base:   in.AgnhostRoot,
		Files:  []oci.File{{Path: "/coredns", Mode: 0o755, Content: in.CoreDNS}},
		Config: oci.Config{Cmd: []string{"bash"}, Env: []string{pathEnv}},
	})
	// A Debian root whose default user is 1234, as upstream's.
	add("nonroot-1.5.tar", oci.Image{
		Name:   e2eRegistry + "nonroot:1.5",
		Base:   in.AgnhostRoot,
		Files:  []oci.File{{Path: "/etc/ecom-agent-image", Mode: 0o644, Content: []byte("nonroot: a Debian root run as uid 1234, built by ecom-agent\n")}},
		Config: oci.Config{Cmd: []string{"bash"}, Env: []string{pathEnv}, User: "1234"},
	})
	pause := images.Pause(in.Pause, in.Arch, in.Created)
	pause.Name = gcRegistry + "pause:3.10.2"
	add("pause-3.10.2.tar", pause)
	add("etcd-3.7.0-0.tar", oci.Image{
		Name:   gcRegistry + "etcd:3.7.0-0",
		Files:  []oci.File{{Path: "/usr/local/bin/etcd", Mode: 0o755, Content: in.Etcd}},
		Config: oci.Config{Entrypoint: []string{"/usr/local/bin/etcd"}, Env: []string{pathEnv}, ExposedPorts: []string{"2379/tcp", "2380/tcp"}},
	})
	add("sample-apiserver-1.29.2.tar", oci.Image{
		Name:   e2eRegistry + "sample-apiserver:1.29.2",
		Files:  []oci.File{{Path: "/sample-apiserver", Mode: 0o755, Content: in.SampleAPIServer}},
		Config: oci.Config{Entrypoint: []string{"/sample-apiserver"}},
	})
	return out
}

const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// agnhost is an image of the agnhost program above the agnhost root, as
// upstream's Dockerfile lays it out, with extra files.
func agnhost(in Inputs, name string, extra []oci.File, cmd []string) oci.Image {
	files := append([]oci.File{
		{Path: "/agnhost", Mode: 0o755, Content: in.Agnhost},
		{Path: "/agnhost-2", Mode: fs.ModeSymlink | 0o777, Content: []byte("agnhost")},
		{Path: "/coredns", Mode: 0o755, Content: in.CoreDNS},
		{Path: "/localhost.crt", Mode: 0o644, Content: in.LocalhostCrt},
		{Path: "/localhost.key", Mode: 0o644, Content: in.LocalhostKey},
		{Path: "/uploads", Mode: fs.ModeDir | 0o755},
	}, extra...)
	return oci.Image{
		Name:  e2eRegistry + name,
		Base:  in.AgnhostRoot,
		Files: files,
		Config: oci.Config{
			Entrypoint: []string{"/agnhost"}, Cmd: cmd, Env: []string{pathEnv},
			ExposedPorts: []string{"80/tcp", "8080/tcp", "8081/tcp", "9376/tcp", "5000/tcp"},
		},
	}
}
