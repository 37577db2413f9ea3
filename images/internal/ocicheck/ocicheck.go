// Package ocicheck reads an image archive written by images/oci and checks
// it the way an importer would, without trusting the writer: for the
// tests of images/oci, images and mkimage. The archives exist for
// air-gapped nodes, where a bad one is found only when a pod sandbox fails
// to start, so the tests check every digest and reference.
package ocicheck

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ecom-platform/ecom-agent/images/oci"
)

// Entry is a tar entry.
type Entry struct {
	Name     string
	Typeflag byte
	Mode     int64
	Uid, Gid int
	ModTime  time.Time
	Linkname string
	Content  []byte
}

// Archive is a checked image archive.
type Archive struct {
	// Entries are the archive's entries, in order.
	Entries []Entry
	Layout  struct {
		ImageLayoutVersion string `json:"imageLayoutVersion"`
	}
	Index          oci.Index
	Manifest       oci.Manifest
	ManifestDesc   oci.Descriptor // from index.json
	Config         oci.ImageConfig
	DockerManifest []oci.DockerManifest
	// Layer holds the uncompressed top layer's entries, in order;
	// BaseLayers those of the layers below it (Image.Base), bottom first.
	Layer      []Entry
	BaseLayers [][]Entry
	// LayerGzipHeader is the layer's gzip header.
	LayerGzipHeader gzip.Header
}

// Name is the image name from index.json.
func (a *Archive) Name() string { return a.ManifestDesc.Annotations[oci.AnnotationImageName] }

// LayerFile returns the layer entry named name ("pause", "etc/").
func (a *Archive) LayerFile(name string) (Entry, bool) {
	for _, e := range a.Layer {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func readTar(r io.Reader) ([]Entry, error) {
	var out []Entry
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		out = append(out, Entry{h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime, h.Linkname, content})
	}
}

// Check parses data and checks it: every blob's name is its sha256; the
// index, manifest and manifest.json reference blobs that exist with the
// right size and digest; media types are OCI's; the layer is gzip with a
// header without name or time, and its uncompressed digest is the
// config's diff_id; entries are sorted, owned by root, and their parents
// precede them. It returns every problem found, joined.
func Check(data []byte) (*Archive, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	entries, err := readTar(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	a := &Archive{Entries: entries}
	files := map[string][]byte{}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
		if e.Uid != 0 || e.Gid != 0 {
			fail("archive %s: owner %d:%d", e.Name, e.Uid, e.Gid)
		}
		if _, dup := files[e.Name]; dup {
			fail("archive %s: twice", e.Name)
		}
		if e.Typeflag == tar.TypeReg {
			files[e.Name] = e.Content
		}
		if strings.HasPrefix(e.Name, "blobs/sha256/") && e.Typeflag == tar.TypeReg {
			if want := "sha256:" + strings.TrimPrefix(e.Name, "blobs/sha256/"); digestOf(e.Content) != want {
				fail("blob %s: content digest %s", e.Name, digestOf(e.Content))
			}
		}
	}
	if !sort.StringsAreSorted(names) {
		fail("archive entries not sorted: %q", names)
	}
	for _, need := range []string{"oci-layout", "index.json", "manifest.json"} {
		if _, ok := files[need]; !ok {
			fail("archive: no %s", need)
		}
	}
	decode := func(name string, v any) bool {
		if b, ok := files[name]; ok {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				fail("%s: %v", name, err)
				return false
			}
			return true
		}
		return false
	}
	// blob returns the blob desc points to, checking size and digest.
	blob := func(what string, desc oci.Descriptor) ([]byte, bool) {
		name := "blobs/sha256/" + strings.TrimPrefix(desc.Digest, "sha256:")
		b, ok := files[name]
		if !strings.HasPrefix(desc.Digest, "sha256:") || !ok {
			fail("%s: blob %s missing", what, desc.Digest)
			return nil, false
		}
		if int64(len(b)) != desc.Size {
			fail("%s: size %d, blob has %d", what, desc.Size, len(b))
		}
		if digestOf(b) != desc.Digest {
			fail("%s: digest %s, blob has %s", what, desc.Digest, digestOf(b))
		}
		return b, true
	}

	if decode("oci-layout", &a.Layout) && a.Layout.ImageLayoutVersion != oci.ImageLayoutVersion {
		fail("oci-layout: version %q", a.Layout.ImageLayoutVersion)
	}
	if decode("index.json", &a.Index) {
		if a.Index.SchemaVersion != 2 || a.Index.MediaType != oci.MediaTypeImageIndex {
			fail("index.json: schema %d, media type %q", a.Index.SchemaVersion, a.Index.MediaType)
		}
		if len(a.Index.Manifests) != 1 {
			fail("index.json: %d manifests, want 1", len(a.Index.Manifests))
		} else {
			a.ManifestDesc = a.Index.Manifests[0]
		}
	}
	if a.ManifestDesc.MediaType != oci.MediaTypeImageManifest {
		fail("index.json: manifest media type %q", a.ManifestDesc.MediaType)
	}
	if mb, ok := blob("manifest", a.ManifestDesc); ok {
		if err := json.Unmarshal(mb, &a.Manifest); err != nil {
			fail("manifest: %v", err)
		}
	}
	m := a.Manifest
	if m.SchemaVersion != 2 || m.MediaType != oci.MediaTypeImageManifest {
		fail("manifest: schema %d, media type %q", m.SchemaVersion, m.MediaType)
	}
	if m.Config.MediaType != oci.MediaTypeImageConfig {
		fail("manifest: config media type %q", m.Config.MediaType)
	}
	if cb, ok := blob("config", m.Config); ok {
		dec := json.NewDecoder(bytes.NewReader(cb))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a.Config); err != nil {
			fail("config: %v", err)
		}
	}
	if len(m.Layers) == 0 {
		fail("manifest: no layers")
	}
	if len(a.Config.RootFS.DiffIDs) != len(m.Layers) || len(a.Config.History) != len(m.Layers) {
		fail("config: %d diff_ids and %d history entries for %d layers", len(a.Config.RootFS.DiffIDs), len(a.Config.History), len(m.Layers))
	}
	for i, l := range m.Layers {
		if l.MediaType != oci.MediaTypeLayerGzip {
			fail("layer %d: media type %q", i, l.MediaType)
		}
		lb, ok := blob(fmt.Sprintf("layer %d", i), l)
		if !ok {
			continue
		}
		if i < len(m.Layers)-1 {
			checkBaseLayer(a, i, lb, fail)
		} else {
			checkLayer(a, lb, fail)
		}
	}
	if a.Config.RootFS.Type != "layers" {
		fail("config: rootfs type %q", a.Config.RootFS.Type)
	}
	if p := a.ManifestDesc.Platform; p == nil || p.OS != a.Config.OS || p.Architecture != a.Config.Architecture || p.Variant != a.Config.Variant {
		fail("index.json: platform %+v, config %s/%s/%s", p, a.Config.OS, a.Config.Architecture, a.Config.Variant)
	}

	name := a.ManifestDesc.Annotations[oci.AnnotationImageName]
	_, tag, err := oci.SplitName(name)
	if err != nil {
		fail("index.json: %v", err)
	}
	if ref := a.ManifestDesc.Annotations[oci.AnnotationRefName]; ref != tag {
		fail("index.json: ref name %q, want the tag %q", ref, tag)
	}
	if decode("manifest.json", &a.DockerManifest) {
		if len(a.DockerManifest) != 1 {
			fail("manifest.json: %d entries", len(a.DockerManifest))
		} else {
			d := a.DockerManifest[0]
			if len(d.RepoTags) != 1 || d.RepoTags[0] != name {
				fail("manifest.json: RepoTags %q, want [%q]", d.RepoTags, name)
			}
			if want := "blobs/sha256/" + strings.TrimPrefix(m.Config.Digest, "sha256:"); d.Config != want {
				fail("manifest.json: Config %q, want %q", d.Config, want)
			}
			var want []string
			for _, l := range m.Layers {
				want = append(want, "blobs/sha256/"+strings.TrimPrefix(l.Digest, "sha256:"))
			}
			if strings.Join(d.Layers, " ") != strings.Join(want, " ") {
				fail("manifest.json: Layers %q, want %q", d.Layers, want)
			}
		}
	}
	// Nothing else: no stray files.
	layerBlobs := map[string]bool{}
	for _, l := range m.Layers {
		layerBlobs["blobs/sha256/"+strings.TrimPrefix(l.Digest, "sha256:")] = true
	}
	for name := range files {
		switch {
		case name == "oci-layout" || name == "index.json" || name == "manifest.json":
		case name == "blobs/sha256/"+strings.TrimPrefix(a.ManifestDesc.Digest, "sha256:"):
		case name == "blobs/sha256/"+strings.TrimPrefix(m.Config.Digest, "sha256:"):
		case layerBlobs[name]:
		default:
			fail("archive: unreferenced file %s", name)
		}
	}
	return a, errors.Join(errs...)
}

// checkBaseLayer checks a layer below the top one (Image.Base): a tar
// whose uncompressed digest is the config's diff_id i. Its entries are
// someone else's (a Debian root) and kept as they are.
func checkBaseLayer(a *Archive, i int, gz []byte, fail func(string, ...any)) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		fail("layer %d: %v", i, err)
		return
	}
	zr.Multistream(false)
	raw, err := io.ReadAll(zr)
	if err != nil {
		fail("layer %d: %v", i, err)
		return
	}
	if i >= len(a.Config.RootFS.DiffIDs) || a.Config.RootFS.DiffIDs[i] != digestOf(raw) {
		fail("config: diff_ids %q, uncompressed layer %d is %s", a.Config.RootFS.DiffIDs, i, digestOf(raw))
	}
	entries, err := readTar(bytes.NewReader(raw))
	if err != nil {
		fail("layer %d tar: %v", i, err)
		return
	}
	a.BaseLayers = append(a.BaseLayers, entries)
}

// checkLayer checks the top layer, the one images/oci writes from Files.
func checkLayer(a *Archive, gz []byte, fail func(string, ...any)) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		fail("layer: %v", err)
		return
	}
	a.LayerGzipHeader = zr.Header
	if zr.Name != "" || zr.Comment != "" || !zr.ModTime.IsZero() || zr.Extra != nil {
		fail("layer: gzip header %+v, want no name, comment, time or extra", zr.Header)
	}
	zr.Multistream(false)
	raw, err := io.ReadAll(zr)
	if err != nil {
		fail("layer: %v", err)
		return
	}
	if n := len(a.Config.RootFS.DiffIDs); n == 0 || a.Config.RootFS.DiffIDs[n-1] != digestOf(raw) {
		fail("config: diff_ids %q, uncompressed top layer is %s", a.Config.RootFS.DiffIDs, digestOf(raw))
	}
	if a.Layer, err = readTar(bytes.NewReader(raw)); err != nil {
		fail("layer tar: %v", err)
		return
	}
	seen := map[string]bool{}
	var names []string
	for _, e := range a.Layer {
		name := strings.TrimSuffix(e.Name, "/")
		names = append(names, name)
		if e.Uid != 0 || e.Gid != 0 {
			fail("layer %s: owner %d:%d", e.Name, e.Uid, e.Gid)
		}
		if strings.HasPrefix(name, "/") || strings.Contains("/"+name+"/", "/../") || strings.Contains("/"+name+"/", "/./") {
			fail("layer %s: bad name", e.Name)
		}
		if (e.Typeflag == tar.TypeDir) != strings.HasSuffix(e.Name, "/") {
			fail("layer %s: type %q and trailing slash disagree", e.Name, e.Typeflag)
		}
		if i := strings.LastIndex(name, "/"); i > 0 && !seen[name[:i]] {
			fail("layer %s: parent %s missing or later", e.Name, name[:i])
		}
		if e.Typeflag == tar.TypeDir {
			seen[name] = true
		}
	}
	if !sort.StringsAreSorted(names) {
		fail("layer entries not sorted: %q", names)
	}
}
