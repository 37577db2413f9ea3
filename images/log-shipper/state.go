package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// stateFile is the name of the positions file in the state directory.
const stateFile = "positions.json"

// position is a saved read position: the file is known by its identity
// (device and inode, which a rename keeps) and a fingerprint of its first
// bytes (which tells a new file that reuses the inode number from the
// old one); path is where it was last seen, whose directory is searched
// for the file when it was rotated away while the shipper was down.
type position struct {
	Path     string `json:"path"`
	Dev      uint64 `json:"dev"`
	Ino      uint64 `json:"ino"`
	Offset   int64  `json:"offset"`
	HeadLen  int    `json:"head_len"`
	HeadHash string `json:"head_hash"`
}

type positions struct {
	Version int        `json:"version"`
	Files   []position `json:"files"`
}

func (p position) id() fileID { return fileID{dev: p.Dev, ino: p.Ino} }

// matches reports whether f's first bytes are those p was saved with.
func (p position) matches(f *os.File) bool {
	if p.HeadLen == 0 {
		return true
	}
	_, h, ok := headHash(f, p.HeadLen)
	return ok && strconv.FormatUint(h, 16) == p.HeadHash
}

// loadState reads the positions file; a missing one is no positions, an
// unreadable one an error, a damaged one is reported and ignored.
func (s *shipper) loadState() error {
	data, err := os.ReadFile(filepath.Join(s.cfg.stateDir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st positions
	if err := json.Unmarshal(data, &st); err != nil || st.Version != 1 {
		s.log.Warn("ignoring damaged positions file", "dir", s.cfg.stateDir, "error", err)
		return nil
	}
	for _, p := range st.Files {
		s.saved[p.id()] = p
	}
	return nil
}

// saveState writes the positions of every open file: to a temporary
// file, synced, then renamed over the positions file, so a crash leaves
// the old positions or the new ones, never a mix.
func (s *shipper) saveState() error {
	st := positions{Version: 1, Files: []position{}}
	add := func(fl *follower) {
		n, h := fl.fingerprint()
		st.Files = append(st.Files, position{Path: fl.path, Dev: fl.id.dev, Ino: fl.id.ino,
			Offset: fl.offset, HeadLen: n, HeadHash: strconv.FormatUint(h, 16)})
	}
	for _, fl := range s.active {
		if fl != nil {
			add(fl)
		}
	}
	for _, fl := range s.retired {
		add(fl)
	}
	slices.SortFunc(st.Files, func(a, b position) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Ino, b.Ino))
	})
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(s.cfg.stateDir, stateFile, append(data, '\n')); err != nil {
		s.m.stateErrors.Add(1)
		return fmt.Errorf("saving positions: %w", err)
	}
	s.dirty = false
	return nil
}

func writeAtomic(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if d, err := os.Open(dir); err == nil { // make the rename durable
		d.Sync()
		d.Close()
	}
	return nil
}
