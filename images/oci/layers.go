package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// compressed remembers the compressed layers of this process by their
// uncompressed digest: images sharing a Base (a Debian root of 170 MB)
// compress it once.
var compressed sync.Map // [sha256.Size]byte -> []byte

// gzipped compresses a layer: best compression, and the zero header (no
// name, no mtime, OS "unknown"), so the same tar gives the same bytes.
func gzipped(diffID [sha256.Size]byte, tarball []byte) ([]byte, error) {
	if gz, ok := compressed.Load(diffID); ok {
		return gz.([]byte), nil
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(tarball); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed.Store(diffID, gz.Bytes())
	return gz.Bytes(), nil
}

// history has one entry per layer.
func history(layers int, created string) []HistoryEntry {
	h := make([]HistoryEntry, layers)
	for i := range h {
		h[i] = HistoryEntry{Created: created, CreatedBy: createdBy}
	}
	return h
}

func (b *built) layerDescs() []Descriptor {
	var d []Descriptor
	for _, l := range b.layers {
		d = append(d, l.desc)
	}
	return d
}

func (b *built) layerPaths() []string {
	var p []string
	for _, l := range b.layers {
		p = append(p, l.path())
	}
	return p
}

// layer returns the uncompressed layer tar: the files and their parent
// directories, sorted by path (a parent sorts before its children).
func layer(files []File, mtime time.Time) ([]byte, error) {
	entries := map[string]entry{}
	for _, f := range files {
		name := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		if name == "" || f.Path != "/"+name && f.Path != name {
			return nil, fmt.Errorf("file %q: want a clean path below /", f.Path)
		}
		switch f.Mode.Type() {
		case 0, fs.ModeDir, fs.ModeSymlink:
		default:
			return nil, fmt.Errorf("file %q: unsupported type %v", f.Path, f.Mode.Type())
		}
		if _, dup := entries[name]; dup {
			return nil, fmt.Errorf("file %q: listed twice", f.Path)
		}
		entries[name] = entry{name: name, mode: f.Mode, data: f.Content}
	}
	// Parents: created as 0755 directories unless listed; a listed
	// parent must be a directory.
	for name := range entries {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if e, ok := entries[dir]; ok {
				if !e.mode.IsDir() {
					return nil, fmt.Errorf("file %q: parent %q is not a directory", name, dir)
				}
				continue
			}
			entries[dir] = entry{name: dir, mode: fs.ModeDir | 0o755}
		}
	}
	names := make([]string, 0, len(entries))
	for name := range entries {
		names = append(names, name)
	}
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range names {
		e := entries[name]
		hdr := &tar.Header{
			Name:    name,
			Mode:    tarMode(e.mode),
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		switch e.mode.Type() {
		case fs.ModeDir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		case fs.ModeSymlink:
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, string(e.data)
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("file %q: %w", name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tarMode is the tar header mode of m: permissions and the setuid,
// setgid and sticky bits (the type is in the type flag).
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// entry is a layer entry with a clean relative path.
type entry struct {
	name string
	mode fs.FileMode
	data []byte
}
