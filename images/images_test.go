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

// The CoreDNS image's tag is the version images/coredns/go.mod builds.
func TestCoreDNSVersionMatchesItsModule(t *testing.T) {
	data, err := os.ReadFile("coredns/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := "github.com/coredns/coredns v" + images.CoreDNSVersion
	if !strings.Contains(string(data), want) {
		t.Errorf("images/coredns/go.mod does not require %s; make images.CoreDNSVersion the version it builds", want)
	}
}

// The seeded CoreDNS Deployment runs the image the agent ships.
func TestSeededCoreDNSRunsTheShippedImage(t *testing.T) {
	data, err := os.ReadFile("../seed/manifests/00-coredns.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "image: "+images.CoreDNSImage+"\n") {
		t.Errorf("seed/manifests/00-coredns.yaml does not run %s", images.CoreDNSImage)
	}
}
