package oci_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/images/internal/ocicheck"
	"github.com/ecom-platform/ecom-agent/images/oci"
)

func testImage() oci.Image {
	return oci.Image{
		Name: "ecom-agent.local/tool:2.1",
		Files: []oci.File{
			{Path: "/usr/bin/tool", Mode: fs.ModeSymlink | 0o777, Content: []byte("/bin/tool")},
			{Path: "/bin/tool", Mode: 0o755, Content: []byte("#!/bin/true\n")},
			{Path: "etc/app/config", Mode: 0o640, Content: []byte("a = 1\n")},
			{Path: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
			{Path: "/bin/su", Mode: fs.ModeSetuid | 0o755, Content: []byte("x")},
			{Path: "/empty", Mode: 0o600},
		},
		Config: oci.Config{
			Entrypoint:   []string{"/bin/tool"},
			Cmd:          []string{"-v"},
			Env:          []string{"PATH=/bin", "A=b"},
			ExposedPorts: []string{"8080/tcp", "53/udp", "9090"},
			User:         "1000:1000",
			WorkingDir:   "/tmp",
			Labels:       map[string]string{"b": "2", "a": "1"},
		},
	}
}

func write(t *testing.T, img oci.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := oci.Write(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWriteArchive(t *testing.T) {
	data := write(t, testImage())
	a, err := ocicheck.Check(data)
	if err != nil {
		t.Fatal(err)
	}

	// The outer archive: the layout, in name order.
	var names []string
	for _, e := range a.Entries {
		names = append(names, e.Name)
		if !e.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: mtime %v, want the epoch", e.Name, e.ModTime)
		}
	}
	blob := func(digest string) string { return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:") }
	want := []string{"blobs/", "blobs/sha256/", blob(a.ManifestDesc.Digest), blob(a.Manifest.Config.Digest), blob(a.Manifest.Layers[0].Digest), "index.json", "manifest.json", "oci-layout"}
	sort.Strings(want)
	if !reflect.DeepEqual(names, want) {
		t.Errorf("entries %q, want %q", names, want)
	}

	// Names: containerd's name, the tag as the OCI ref name, RepoTags.
	if got := a.ManifestDesc.Annotations; !reflect.DeepEqual(got, map[string]string{
		"io.containerd.image.name":          "ecom-agent.local/tool:2.1",
		"org.opencontainers.image.ref.name": "2.1",
	}) {
		t.Errorf("index annotations %v", got)
	}
	if got := a.DockerManifest[0].RepoTags; !reflect.DeepEqual(got, []string{"ecom-agent.local/tool:2.1"}) {
		t.Errorf("RepoTags %q", got)
	}

	// Media types, spelled out rather than taken from the package.
	if a.Index.MediaType != "application/vnd.oci.image.index.v1+json" ||
		a.ManifestDesc.MediaType != "application/vnd.oci.image.manifest.v1+json" ||
		a.Manifest.MediaType != "application/vnd.oci.image.manifest.v1+json" ||
		a.Manifest.Config.MediaType != "application/vnd.oci.image.config.v1+json" ||
		a.Manifest.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Errorf("media types: index %q, manifest %q/%q, config %q, layer %q", a.Index.MediaType,
			a.ManifestDesc.MediaType, a.Manifest.MediaType, a.Manifest.Config.MediaType, a.Manifest.Layers[0].MediaType)
	}
	if a.Layout.ImageLayoutVersion != "1.0.0" {
		t.Errorf("oci-layout %q", a.Layout.ImageLayoutVersion)
	}

	// The config.
	c := a.Config
	if c.OS != "linux" || c.Architecture != runtime.GOARCH || c.Created != "1970-01-01T00:00:00Z" {
		t.Errorf("config: os %q arch %q created %q", c.OS, c.Architecture, c.Created)
	}
	if p := a.ManifestDesc.Platform; p == nil || p.OS != "linux" || p.Architecture != runtime.GOARCH {
		t.Errorf("index platform %+v", p)
	}
	wantRC := oci.RuntimeConfig{
		User:         "1000:1000",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "53/udp": {}, "9090/tcp": {}},
		Env:          []string{"PATH=/bin", "A=b"},
		Entrypoint:   []string{"/bin/tool"},
		Cmd:          []string{"-v"},
		WorkingDir:   "/tmp",
		Labels:       map[string]string{"a": "1", "b": "2"},
	}
	if !reflect.DeepEqual(c.Config, wantRC) {
		t.Errorf("runtime config %+v, want %+v", c.Config, wantRC)
	}
	if len(c.History) != 1 || c.History[0].Created != c.Created {
		t.Errorf("history %+v", c.History)
	}
	// Field names as Docker and containerd read them.
	var raw map[string]any
	if err := json.Unmarshal(blobContent(t, a, a.Manifest.Config.Digest), &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["rootfs"].(map[string]any)["diff_ids"]; !ok {
		t.Errorf("config has no rootfs.diff_ids: %v", raw)
	}
	if _, ok := raw["config"].(map[string]any)["ExposedPorts"]; !ok {
		t.Errorf("config has no config.ExposedPorts: %v", raw)
	}

	// The layer: the files with their modes, and their parents.
	type ent struct {
		name     string
		typ      byte
		mode     int64
		content  string
		linkname string
	}
	var got []ent
	for _, e := range a.Layer {
		got = append(got, ent{e.Name, e.Typeflag, e.Mode, string(e.Content), e.Linkname})
		if !e.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("layer %s: mtime %v", e.Name, e.ModTime)
		}
	}
	wantLayer := []ent{
		{"bin/", tar.TypeDir, 0o755, "", ""},
		{"bin/su", tar.TypeReg, 0o4755, "x", ""},
		{"bin/tool", tar.TypeReg, 0o755, "#!/bin/true\n", ""},
		{"empty", tar.TypeReg, 0o600, "", ""},
		{"etc/", tar.TypeDir, 0o755, "", ""},
		{"etc/app/", tar.TypeDir, 0o755, "", ""},
		{"etc/app/config", tar.TypeReg, 0o640, "a = 1\n", ""},
		{"tmp/", tar.TypeDir, 0o1777, "", ""},
		{"usr/", tar.TypeDir, 0o755, "", ""},
		{"usr/bin/", tar.TypeDir, 0o755, "", ""},
		{"usr/bin/tool", tar.TypeSymlink, 0o777, "", "/bin/tool"},
	}
	if !reflect.DeepEqual(got, wantLayer) {
		t.Errorf("layer:\n got %v\nwant %v", got, wantLayer)
	}
}

func blobContent(t *testing.T, a *ocicheck.Archive, digest string) []byte {
	t.Helper()
	for _, e := range a.Entries {
		if e.Name == "blobs/sha256/"+strings.TrimPrefix(digest, "sha256:") {
			return e.Content
		}
	}
	t.Fatalf("no blob %s", digest)
	return nil
}

// rewrite returns data with fn applied to each regular file's content.
func rewrite(t *testing.T, data []byte, fn func(name string, content []byte) []byte) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			content = fn(h.Name, content)
			h.Size = int64(len(content))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// The checker the tests rely on finds broken archives.
func TestCheckFindsDamage(t *testing.T) {
	data := write(t, testImage())
	a, err := ocicheck.Check(data)
	if err != nil {
		t.Fatal(err)
	}
	layer := "blobs/sha256/" + strings.TrimPrefix(a.Manifest.Layers[0].Digest, "sha256:")
	for _, tc := range []struct {
		name string
		fn   func(name string, content []byte) []byte
		want string
	}{
		{"flipped layer byte", func(name string, c []byte) []byte {
			if name == layer {
				c = bytes.Clone(c)
				c[len(c)/2] ^= 1
			}
			return c
		}, "content digest"},
		{"wrong size in index", func(name string, c []byte) []byte {
			if name == "index.json" {
				return bytes.Replace(c, []byte(`"size":`), []byte(`"size":1`), 1)
			}
			return c
		}, "size"},
		{"no image name", func(name string, c []byte) []byte {
			if name == "index.json" {
				return bytes.Replace(c, []byte(`"io.containerd.image.name"`), []byte(`"x"`), 1)
			}
			return c
		}, "no tag"},
		{"wrong RepoTags", func(name string, c []byte) []byte {
			if name == "manifest.json" {
				return bytes.Replace(c, []byte(`tool:2.1`), []byte(`tool:2.2`), 1)
			}
			return c
		}, "RepoTags"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ocicheck.Check(rewrite(t, data, tc.fn))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	img := testImage()
	first := write(t, img)
	if second := write(t, img); !bytes.Equal(first, second) {
		t.Fatal("two writes of the same image differ")
	}
	// The order of Files does not matter.
	shuffled := testImage()
	for i, j := 0, len(shuffled.Files)-1; i < j; i, j = i+1, j-1 {
		shuffled.Files[i], shuffled.Files[j] = shuffled.Files[j], shuffled.Files[i]
	}
	if !bytes.Equal(first, write(t, shuffled)) {
		t.Error("reordering Files changed the archive")
	}
	// ManifestDigest is the digest the index points to.
	a, err := ocicheck.Check(first)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := oci.ManifestDigest(img); err != nil || d != a.ManifestDesc.Digest {
		t.Errorf("ManifestDigest = %s, %v; index has %s", d, err, a.ManifestDesc.Digest)
	}
	// Content changes the digests.
	changed := testImage()
	changed.Files[1].Content = []byte("#!/bin/false\n")
	if d, _ := oci.ManifestDigest(changed); d == a.ManifestDesc.Digest {
		t.Error("different content, same manifest digest")
	}
}

func TestCreated(t *testing.T) {
	img := testImage()
	img.Created = time.Date(2026, 11, 30, 10, 0, 0, 500, time.FixedZone("x", 3600))
	a, err := ocicheck.Check(write(t, img))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	if a.Config.Created != "2026-11-30T09:00:00Z" {
		t.Errorf("created %q", a.Config.Created)
	}
	for _, e := range append(a.Entries, a.Layer...) {
		if !e.ModTime.Equal(want) {
			t.Errorf("%s: mtime %v, want %v", e.Name, e.ModTime, want)
		}
	}
	if a.LayerGzipHeader.Name != "" || !a.LayerGzipHeader.ModTime.IsZero() {
		t.Errorf("gzip header %+v", a.LayerGzipHeader)
	}
}

func TestSourceDateEpoch(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	if got, err := oci.SourceDateEpoch(); err != nil || !got.IsZero() {
		t.Errorf("unset: %v, %v", got, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1764496800")
	if got, err := oci.SourceDateEpoch(); err != nil || got.Unix() != 1764496800 {
		t.Errorf("set: %v, %v", got, err)
	}
	for _, bad := range []string{"yesterday", "-1", "1.5"} {
		t.Setenv("SOURCE_DATE_EPOCH", bad)
		if _, err := oci.SourceDateEpoch(); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tool.tar")
	if err := os.WriteFile(file, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := oci.WriteFile(file, testImage()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, write(t, testImage())) {
		t.Error("WriteFile and Write differ")
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
	// A failure leaves the old file and no temporary file.
	bad := testImage()
	bad.Name = "no-tag"
	if err := oci.WriteFile(file, bad); err == nil {
		t.Error("bad image written")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %v", entries)
	}
	if got2, _ := os.ReadFile(file); !bytes.Equal(got, got2) {
		t.Error("failed write changed the file")
	}
}

func TestInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*oci.Image)
	}{
		{"no tag", func(i *oci.Image) { i.Name = "ecom-agent.local/tool" }},
		{"digest", func(i *oci.Image) { i.Name = "ecom-agent.local/tool@sha256:00" }},
		{"port in host only", func(i *oci.Image) { i.Name = "ecom-agent.local:5000/tool" }},
		{"upper case", func(i *oci.Image) { i.Name = "ecom-agent.local/Tool:1" }},
		{"bad tag", func(i *oci.Image) { i.Name = "ecom-agent.local/tool:-1" }},
		{"dot-dot path", func(i *oci.Image) { i.Files = []oci.File{{Path: "/../x"}} }},
		{"root path", func(i *oci.Image) { i.Files = []oci.File{{Path: "/"}} }},
		{"unclean path", func(i *oci.Image) { i.Files = []oci.File{{Path: "/a//b"}} }},
		{"duplicate", func(i *oci.Image) { i.Files = []oci.File{{Path: "/a"}, {Path: "a"}} }},
		{"file as parent", func(i *oci.Image) { i.Files = []oci.File{{Path: "/a"}, {Path: "/a/b"}} }},
		{"device", func(i *oci.Image) { i.Files = []oci.File{{Path: "/dev/null", Mode: fs.ModeDevice}} }},
		{"bad port", func(i *oci.Image) { i.Config.ExposedPorts = []string{"http"} }},
		{"bad protocol", func(i *oci.Image) { i.Config.ExposedPorts = []string{"80/http"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := testImage()
			tc.edit(&img)
			if err := oci.Write(io.Discard, img); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestSplitName(t *testing.T) {
	for _, tc := range []struct{ name, repo, tag string }{
		{"ecom-agent.local/pause:1.0", "ecom-agent.local/pause", "1.0"},
		{"localhost:5000/a/b:v1_2", "localhost:5000/a/b", "v1_2"},
		{"busybox:latest", "busybox", "latest"},
	} {
		repo, tag, err := oci.SplitName(tc.name)
		if err != nil || repo != tc.repo || tag != tc.tag {
			t.Errorf("SplitName(%q) = %q, %q, %v", tc.name, repo, tag, err)
		}
	}
}

// A Base becomes the first layer exactly as given (owners, devices and
// times kept); the files are the layer above it.
func TestBaseLayer(t *testing.T) {
	var base bytes.Buffer
	tw := tar.NewWriter(&base)
	for _, h := range []*tar.Header{
		{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5},
		{Name: "./var/www/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 33, Gid: 33},
		{Name: "./dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
	} {
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("root\n"))
		}
	}
	tw.Close()
	img := testImage()
	img.Base = base.Bytes()
	data := write(t, img)
	a, err := ocicheck.Check(data)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(a.Manifest.Layers); n != 2 || len(a.BaseLayers) != 1 {
		t.Fatalf("%d layers, %d base layers; want 2 and 1", n, len(a.BaseLayers))
	}
	var www *ocicheck.Entry
	for i, e := range a.BaseLayers[0] {
		if e.Name == "./var/www/" {
			www = &a.BaseLayers[0][i]
		}
	}
	if www == nil || www.Uid != 33 || len(a.BaseLayers[0]) != 4 {
		t.Errorf("base layer entries %+v", a.BaseLayers[0])
	}
	if _, ok := a.LayerFile("bin/tool"); !ok {
		t.Error("the files are not the top layer")
	}
	if !bytes.Equal(data, write(t, img)) {
		t.Error("an image with a base is not reproducible")
	}
}
