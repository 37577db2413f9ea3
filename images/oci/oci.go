// Package oci writes container images as image archives that containerd
// imports offline: one layer of files given in Go, optionally above a base
// layer given as a tar (a Debian root, for the conformance images).
//
// The clusters' nodes reach no registry, so the images they need (the
// pause image containerd's CRI plugin uses for every pod sandbox, and the
// tests' echo server) travel as tarballs: the agent drops them in
// /var/lib/ecom-agent/images/ and runs `ctr -n k8s.io images import` before
// the kubelet starts. An archive is an OCI image layout (oci-layout,
// index.json, blobs/sha256/...) with a Docker-style manifest.json beside
// it, so both containerd's OCI path and `docker load`-style importers read
// it.
//
// Archives are reproducible: the same Image gives the same bytes (with the
// same Go release, whose compress/gzip makes the layer). Every
// mtime is Image.Created (the Unix epoch when zero, or SOURCE_DATE_EPOCH),
// owners are root, entries are sorted, JSON has a fixed field order, and
// the layer's gzip header has no name or time. Rebuilding from the same
// binaries therefore gives the same digests, and a node that already has
// the image imports nothing new.
package oci

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Media types and annotation keys of the OCI image spec (v1.1) and
// containerd.
const (
	MediaTypeImageIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeImageManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeImageConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayerGzip     = "application/vnd.oci.image.layer.v1.tar+gzip"

	// AnnotationRefName is the tag in an OCI layout's index.json.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationImageName is the full image name containerd gives the
	// imported image (it takes precedence over the ref name).
	AnnotationImageName = "io.containerd.image.name"

	// ImageLayoutVersion is the content of the oci-layout file.
	ImageLayoutVersion = "1.0.0"
)

// Image is an image of one layer of Files, above Base when it is set.
type Image struct {
	// Name is the full reference, e.g. "ecom-agent.local/pause:1.0". It
	// must carry a tag and no digest.
	Name string
	// OS and Architecture default to linux and runtime.GOARCH; Variant
	// (e.g. "v8" on arm64) is optional.
	OS           string
	Architecture string
	Variant      string
	// Created is the image's creation time and every entry's mtime. The
	// zero value stands for the Unix epoch (not "now"), so that output is
	// reproducible; see SourceDateEpoch.
	Created time.Time
	// Files make up the top layer (empty when there are none). Parent
	// directories are created (0755).
	Files []File
	// Base, when set, is an uncompressed tar that becomes the first layer
	// as it is: its owners, modes, times and links are kept (a root file
	// system made by mmdebstrap, say). Only its compression is ours.
	Base []byte
	// Config is the runtime configuration.
	Config Config
}

// File is one entry of the layer.
type File struct {
	// Path is absolute or relative to the image root ("/pause", "pause").
	Path string
	// Mode holds the permission bits (and setuid, setgid, sticky). With
	// fs.ModeDir the entry is a directory; with fs.ModeSymlink a symbolic
	// link to Content. Other types are refused.
	Mode    fs.FileMode
	Content []byte
}

// Config is the part of the image config containers run with.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	// ExposedPorts are "port/proto" ("8080/tcp"); a bare port means tcp.
	ExposedPorts []string
	// User is "uid" or "uid:gid". Give the gid: without /etc/passwd in the
	// image, containerd runs a bare uid with gid 0.
	User       string
	WorkingDir string
	Labels     map[string]string
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *Platform         `json:"platform,omitempty"`
}

// Platform is the platform of a manifest in an index.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// Index is index.json.
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Manifest is an image manifest.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// ImageConfig is the image config blob.
type ImageConfig struct {
	Created      string         `json:"created"`
	Architecture string         `json:"architecture"`
	OS           string         `json:"os"`
	Variant      string         `json:"variant,omitempty"`
	Config       RuntimeConfig  `json:"config"`
	RootFS       RootFS         `json:"rootfs"`
	History      []HistoryEntry `json:"history"`
}

// RuntimeConfig is the "config" object of an image config.
type RuntimeConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
}

// RootFS lists the uncompressed layer digests (diff IDs).
type RootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// HistoryEntry describes how a layer was made.
type HistoryEntry struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

// DockerManifest is one entry of the Docker-style manifest.json.
type DockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// createdBy goes into the config's history.
const createdBy = "github.com/ecom-platform/ecom-agent/images/oci"

// blob is a content-addressed file of the archive.
type blob struct {
	desc Descriptor
	data []byte
}

func newBlob(mediaType string, data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{
		desc: Descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))},
		data: data,
	}
}

// path is the blob's name in the archive.
func (b blob) path() string {
	return "blobs/sha256/" + strings.TrimPrefix(b.desc.Digest, "sha256:")
}

// built is an image's blobs and metadata files.
type built struct {
	layers                []blob
	config, manifest      blob
	index, dockerManifest []byte
	mtime                 time.Time
}

// Write writes img as an image archive to w.
func Write(w io.Writer, img Image) error {
	b, err := build(img)
	if err != nil {
		return err
	}
	return b.write(w)
}

// WriteFile writes img's archive to file, atomically: a temporary file
// in the same directory is written, synced and renamed over file, so a
// reader (the agent's import) never sees half an archive. The file is 0644.
func WriteFile(file string, img Image) (err error) {
	b, err := build(img)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = b.write(tmp); err != nil {
		return err
	}
	if err = tmp.Chmod(0o644); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// ManifestDigest is the digest of img's manifest: what `ctr images ls`
// shows for the imported image, and what a pod's imageID ends with.
func ManifestDigest(img Image) (string, error) {
	b, err := build(img)
	if err != nil {
		return "", err
	}
	return b.manifest.desc.Digest, nil
}

// SourceDateEpoch returns $SOURCE_DATE_EPOCH (Unix seconds) as a time,
// for Image.Created, or the zero time when it is unset or empty.
func SourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Time{}, nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: not Unix seconds", v)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// SplitName splits "host/repo:tag" into the repository and the tag. It
// refuses names without a tag, with a digest, or with upper case letters
// in the repository (which containerd refuses too).
func SplitName(name string) (repo, tag string, err error) {
	if strings.Contains(name, "@") {
		return "", "", fmt.Errorf("image name %q: a digest is not allowed", name)
	}
	i := strings.LastIndex(name, ":")
	if i < 0 || strings.Contains(name[i:], "/") {
		return "", "", fmt.Errorf("image name %q: no tag", name)
	}
	repo, tag = name[:i], name[i+1:]
	if repo == "" || strings.ToLower(repo) != repo || strings.ContainsAny(repo, " \t\n") || strings.HasPrefix(repo, "/") || strings.HasSuffix(repo, "/") || strings.Contains(repo, "//") {
		return "", "", fmt.Errorf("image name %q: bad repository %q", name, repo)
	}
	if !validTag(tag) {
		return "", "", fmt.Errorf("image name %q: bad tag %q", name, tag)
	}
	return repo, tag, nil
}

// validTag follows the distribution spec: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func validTag(tag string) bool {
	if tag == "" || len(tag) > 128 || tag[0] == '.' || tag[0] == '-' {
		return false
	}
	for _, c := range tag {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func build(img Image) (*built, error) {
	_, tag, err := SplitName(img.Name)
	if err != nil {
		return nil, err
	}
	if img.OS == "" {
		img.OS = "linux"
	}
	if img.Architecture == "" {
		img.Architecture = runtime.GOARCH
	}
	mtime := img.Created
	if mtime.IsZero() {
		mtime = time.Unix(0, 0)
	}
	mtime = mtime.UTC().Truncate(time.Second)
	created := mtime.Format(time.RFC3339)

	b := &built{mtime: mtime}
	var tars [][]byte
	if img.Base != nil {
		tars = append(tars, img.Base)
	}
	layerTar, err := layer(img.Files, mtime)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img.Name, err)
	}
	tars = append(tars, layerTar)
	var diffIDs []string
	for _, t := range tars {
		diffID := sha256.Sum256(t)
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(diffID[:]))
		gz, err := gzipped(diffID, t)
		if err != nil {
			return nil, err
		}
		b.layers = append(b.layers, newBlob(MediaTypeLayerGzip, gz))
	}

	ports := map[string]struct{}{}
	for _, p := range img.Config.ExposedPorts {
		port, err := exposedPort(p)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", img.Name, err)
		}
		ports[port] = struct{}{}
	}
	if len(ports) == 0 {
		ports = nil
	}
	cfg := ImageConfig{
		Created:      created,
		Architecture: img.Architecture,
		OS:           img.OS,
		Variant:      img.Variant,
		Config: RuntimeConfig{
			User:         img.Config.User,
			ExposedPorts: ports,
			Env:          img.Config.Env,
			Entrypoint:   img.Config.Entrypoint,
			Cmd:          img.Config.Cmd,
			WorkingDir:   img.Config.WorkingDir,
			Labels:       img.Config.Labels,
		},
		RootFS:  RootFS{Type: "layers", DiffIDs: diffIDs},
		History: history(len(diffIDs), created),
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	b.config = newBlob(MediaTypeImageConfig, cfgJSON)

	mfJSON, err := json.Marshal(Manifest{
		SchemaVersion: 2,
		MediaType:     MediaTypeImageManifest,
		Config:        b.config.desc,
		Layers:        b.layerDescs(),
	})
	if err != nil {
		return nil, err
	}
	b.manifest = newBlob(MediaTypeImageManifest, mfJSON)

	mdesc := b.manifest.desc
	mdesc.Annotations = map[string]string{AnnotationRefName: tag, AnnotationImageName: img.Name}
	mdesc.Platform = &Platform{Architecture: img.Architecture, OS: img.OS, Variant: img.Variant}
	if b.index, err = json.Marshal(Index{SchemaVersion: 2, MediaType: MediaTypeImageIndex, Manifests: []Descriptor{mdesc}}); err != nil {
		return nil, err
	}
	if b.dockerManifest, err = json.Marshal([]DockerManifest{{
		Config:   b.config.path(),
		RepoTags: []string{img.Name},
		Layers:   b.layerPaths(),
	}}); err != nil {
		return nil, err
	}
	return b, nil
}

// exposedPort normalizes "8080" and "8080/tcp" to "8080/tcp".
func exposedPort(p string) (string, error) {
	port, proto, ok := strings.Cut(p, "/")
	if !ok {
		proto = "tcp"
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("exposed port %q: bad port", p)
	}
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return "", fmt.Errorf("exposed port %q: bad protocol", p)
	}
	return port + "/" + proto, nil
}

// write writes the archive: directories, blobs, index.json,
// manifest.json and oci-layout, in name order.
func (b *built) write(w io.Writer) error {
	files := map[string][]byte{
		"oci-layout":    []byte(`{"imageLayoutVersion":"` + ImageLayoutVersion + `"}`),
		"index.json":    b.index,
		"manifest.json": b.dockerManifest,
	}
	for _, bl := range append([]blob{b.config, b.manifest}, b.layers...) {
		files[bl.path()] = bl.data
	}
	names := []string{"blobs/", "blobs/sha256/"}
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)

	tw := tar.NewWriter(w)
	for _, name := range names {
		hdr := &tar.Header{Name: name, ModTime: b.mtime, Format: tar.FormatPAX}
		if data, ok := files[name]; ok {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(data))
		} else {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(files[name]); err != nil {
			return err
		}
	}
	return tw.Close()
}
