// Package images names and defines the container images ecom-agent builds
// itself, from Go, for air-gapped nodes.
//
// No registry is reachable from the clusters' nodes, so nothing can be
// pulled: containerd's CRI plugin is configured with PauseImage as its
// sandbox image (every pod's infrastructure container), and the agent
// imports the archives (PauseArchive, CoreDNSArchive, EchoArchive) from
// /var/lib/ecom-agent/images/ into containerd's k8s.io namespace before the
// kubelet starts. EchoImage is a small HTTP server for the tests: it
// answers with its pod's name and IP.
//
// images/cmd/mkimage (make images) builds the programs in images/pause and
// images/echo, and CoreDNS from the module images/coredns pins, and
// writes the archives with images/oci.
package images

import (
	"strconv"
	"time"

	"github.com/ecom-platform/ecom-agent/images/oci"
)

// The images' names. The registry host ecom-agent.local serves nothing:
// the images exist only where the agent imported them. Having a dot, it
// is kept as the name's domain when containerd and the kubelet normalize
// references (no docker.io/library/ prefix), so a pod spec's image,
// containerd's sandbox image setting and the imported name all match.
// Pods must not force a pull (imagePullPolicy IfNotPresent, the default
// for a tag other than latest, or Never).
const (
	PauseImage = "ecom-agent.local/pause:1.0"
	EchoImage  = "ecom-agent.local/echo:1.0"
	// CoreDNSImage is the cluster DNS, CoreDNSVersion built from its Go
	// module (images/coredns pins it and every dependency in go.sum).
	CoreDNSImage = "ecom-agent.local/coredns:" + CoreDNSVersion
	// LocalPathImage is the node-local volume provisioner,
	// LocalPathVersion of rancher's local-path-provisioner built from its
	// Go module (images/local-path); VolumeHelperImage is the helper it
	// runs on a volume's node to create and delete the volume's directory
	// (images/volume-helper, in place of upstream's busybox and scripts).
	LocalPathImage    = "ecom-agent.local/local-path-provisioner:" + LocalPathVersion
	VolumeHelperImage = "ecom-agent.local/volume-helper:1.0"
	// MetricsServerImage serves the metrics API (HPA, kubectl top),
	// MetricsServerVersion built from its Go module (images/metrics-server).
	MetricsServerImage = "ecom-agent.local/metrics-server:" + MetricsServerVersion
)

// CoreDNSVersion is the CoreDNS release images/coredns/go.mod builds; a
// test checks the two agree.
const CoreDNSVersion = "1.14.7"

// LocalPathVersion and MetricsServerVersion are the releases
// images/local-path/go.mod and images/metrics-server/go.mod build (with
// a "v" there); a test checks they agree.
const (
	LocalPathVersion     = "0.0.30"
	MetricsServerVersion = "0.8.0"
)

// The archives' file names, in mkimage's output directory and in
// /var/lib/ecom-agent/images/.
const (
	PauseArchive         = "pause.tar"
	EchoArchive          = "echo.tar"
	CoreDNSArchive       = "coredns.tar"
	LocalPathArchive     = "local-path-provisioner.tar"
	VolumeHelperArchive  = "volume-helper.tar"
	MetricsServerArchive = "metrics-server.tar"
)

// NodeArchives are the archives every node imports: the pod sandbox and
// the add-ons' images (the agent's package ships them; the Makefile's
// NODE_IMAGES lists the same). EchoArchive is for the tests only.
var NodeArchives = []string{PauseArchive, CoreDNSArchive, LocalPathArchive, VolumeHelperArchive, MetricsServerArchive}

// EchoPort is the echo server's port when $PORT is unset.
const EchoPort = 8080

// The users the images run as, with their groups (without /etc/passwd in
// the image, a bare uid would run with gid 0). 65535 is the upstream
// pause image's user; 65534 is nobody.
const (
	PauseUser = "65535:65535"
	EchoUser  = "65534:65534"
	// CoreDNSUser is root, as upstream's image up to 1.11: binding port
	// 53 needs CAP_NET_BIND_SERVICE, which Kubernetes gives a non-root
	// process only through file capabilities; the Deployment drops every
	// other capability and forbids privilege escalation.
	CoreDNSUser = "0:0"
	// VolumeHelperUser is root: it creates and deletes directories in the
	// root-owned storage directory of the host.
	VolumeHelperUser = "0:0"
	// LocalPathUser and MetricsServerUser only talk to the API server
	// and the kubelets.
	LocalPathUser     = "65534:65534"
	MetricsServerUser = "65534:65534"
)

// Pause is the pause image around the static pause binary for arch (""
// is runtime.GOARCH), created at created (zero: the Unix epoch).
func Pause(binary []byte, arch string, created time.Time) oci.Image {
	return program{PauseImage, "pause", PauseUser, "ecom-agent's pod sandbox (pause) image", nil}.image(binary, arch, created)
}

// Echo is the echo server's image around the static echo binary.
func Echo(binary []byte, arch string, created time.Time) oci.Image {
	return program{EchoImage, "echo", EchoUser, "ecom-agent's test server: answers its hostname and IP",
		[]string{strconv.Itoa(EchoPort) + "/tcp"}}.image(binary, arch, created)
}

// CoreDNS is the cluster DNS image around the static coredns binary.
func CoreDNS(binary []byte, arch string, created time.Time) oci.Image {
	return program{CoreDNSImage, "coredns", CoreDNSUser,
		"CoreDNS " + CoreDNSVersion + ", built by ecom-agent from its Go module for air-gapped clusters",
		[]string{"53/tcp", "53/udp"}}.image(binary, arch, created)
}

// LocalPath is the provisioner's image around the static
// local-path-provisioner binary.
func LocalPath(binary []byte, arch string, created time.Time) oci.Image {
	return program{LocalPathImage, "local-path-provisioner", LocalPathUser,
		"local-path-provisioner " + LocalPathVersion + ", built by ecom-agent from its Go module for air-gapped clusters", nil}.image(binary, arch, created)
}

// VolumeHelper is the image of the provisioner's helper pods.
func VolumeHelper(binary []byte, arch string, created time.Time) oci.Image {
	return program{VolumeHelperImage, "volume-helper", VolumeHelperUser,
		"ecom-agent's helper of local-path-provisioner: creates and deletes volume directories", nil}.image(binary, arch, created)
}

// MetricsServer is the metrics API's image around the static
// metrics-server binary.
func MetricsServer(binary []byte, arch string, created time.Time) oci.Image {
	return program{MetricsServerImage, "metrics-server", MetricsServerUser,
		"metrics-server " + MetricsServerVersion + ", built by ecom-agent from its Go module for air-gapped clusters",
		[]string{"10250/tcp"}}.image(binary, arch, created)
}

// program is an image of one static binary at /<title>, its entrypoint.
type program struct {
	name, title, user, description string
	ports                          []string
}

func (p program) image(binary []byte, arch string, created time.Time) oci.Image {
	return oci.Image{
		Name:         p.name,
		Architecture: arch,
		Created:      created,
		Files:        []oci.File{{Path: "/" + p.title, Mode: 0o755, Content: binary}},
		Config: oci.Config{
			Entrypoint:   []string{"/" + p.title},
			ExposedPorts: p.ports,
			User:         p.user,
			Labels: map[string]string{
				"org.opencontainers.image.title":       p.title,
				"org.opencontainers.image.description": p.description,
				"org.opencontainers.image.version":     tag(p.name),
			},
		},
	}
}

func tag(name string) string {
	_, t, err := oci.SplitName(name)
	if err != nil {
		panic(err)
	}
	return t
}
