package images_test

import (
	"bytes"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/images"
	"github.com/ecom-platform/ecom-agent/images/internal/ocicheck"
	"github.com/ecom-platform/ecom-agent/images/oci"
)

func TestImages(t *testing.T) {
	bin := []byte("\x7fELF binary")
	for _, tc := range []struct {
		img        oci.Image
		name, file string
		user       string
		ports      map[string]struct{}
	}{
		{images.Pause(bin, "", time.Time{}), images.PauseImage, "pause", "65535:65535", nil},
		{images.Echo(bin, "", time.Time{}), images.EchoImage, "echo", "65534:65534", map[string]struct{}{"8080/tcp": {}}},
		{images.VolumeHelper(bin, "", time.Time{}), images.VolumeHelperImage, "volume-helper", "0:0", nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var buf bytes.Buffer
			if err := oci.Write(&buf, tc.img); err != nil {
				t.Fatal(err)
			}
			a, err := ocicheck.Check(buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if a.Name() != tc.name || a.ManifestDesc.Annotations[oci.AnnotationRefName] != "1.0" {
				t.Errorf("annotations %v", a.ManifestDesc.Annotations)
			}
			c := a.Config
			if c.OS != "linux" || c.Architecture != runtime.GOARCH {
				t.Errorf("platform %s/%s", c.OS, c.Architecture)
			}
			if !reflect.DeepEqual(c.Config.Entrypoint, []string{"/" + tc.file}) || c.Config.Cmd != nil {
				t.Errorf("entrypoint %q cmd %q", c.Config.Entrypoint, c.Config.Cmd)
			}
			if c.Config.User != tc.user {
				t.Errorf("user %q, want %q", c.Config.User, tc.user)
			}
			if !reflect.DeepEqual(c.Config.ExposedPorts, tc.ports) {
				t.Errorf("ports %v", c.Config.ExposedPorts)
			}
			if c.Config.Labels["org.opencontainers.image.version"] != "1.0" {
				t.Errorf("labels %v", c.Config.Labels)
			}
			if len(a.Layer) != 1 {
				t.Fatalf("layer %+v, want only the binary", a.Layer)
			}
			if e := a.Layer[0]; e.Name != tc.file || e.Mode != 0o755 || !bytes.Equal(e.Content, bin) {
				t.Errorf("layer entry %s mode %o", e.Name, e.Mode)
			}
		})
	}
	if images.PauseArchive != "pause.tar" || images.EchoArchive != "echo.tar" || images.EchoPort != 8080 {
		t.Error("archive names or port changed")
	}
}

func TestArch(t *testing.T) {
	var buf bytes.Buffer
	if err := oci.Write(&buf, images.Pause([]byte("x"), "arm64", time.Time{})); err != nil {
		t.Fatal(err)
	}
	a, err := ocicheck.Check(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if a.Config.Architecture != "arm64" || a.ManifestDesc.Platform.Architecture != "arm64" {
		t.Errorf("config %s, index %+v", a.Config.Architecture, a.ManifestDesc.Platform)
	}
}

// The images built from other modules are tagged with the version their
// module builds, and the seeded add-ons run the images the agent ships.
var modules = []struct {
	image, gomod, require, manifest string
}{
	{images.CoreDNSImage, "coredns/go.mod", "github.com/coredns/coredns v" + images.CoreDNSVersion, "00-coredns.yaml"},
	{images.LocalPathImage, "local-path/go.mod", "github.com/rancher/local-path-provisioner v" + images.LocalPathVersion, "01-local-path.yaml"},
	{images.MetricsServerImage, "metrics-server/go.mod", "sigs.k8s.io/metrics-server v" + images.MetricsServerVersion, "02-metrics-server.yaml"},
}

func TestVersionsMatchTheirModules(t *testing.T) {
	for _, m := range modules {
		data, err := os.ReadFile(m.gomod)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), m.require+" ") && !strings.Contains(string(data), m.require+"\n") {
			t.Errorf("images/%s does not require %s; make the version in images.go the one it builds", m.gomod, m.require)
		}
	}
}

func TestSeededAddOnsRunTheShippedImages(t *testing.T) {
	for _, m := range modules {
		data, err := os.ReadFile("../seed/manifests/" + m.manifest)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "image: "+m.image+"\n") {
			t.Errorf("seed/manifests/%s does not run %s", m.manifest, m.image)
		}
	}
	data, err := os.ReadFile("../seed/manifests/01-local-path.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "image: "+images.VolumeHelperImage+"\n") {
		t.Errorf("the provisioner's helper pods do not run %s", images.VolumeHelperImage)
	}
}

// The Makefile packages the archives every node needs.
func TestMakefileShipsTheNodeArchives(t *testing.T) {
	data, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	want := "NODE_IMAGES := " + strings.Join(images.NodeArchives, " ") + "\n"
	if !strings.Contains(string(data), want) {
		t.Errorf("the Makefile lacks %q", want)
	}
}
