package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"
)

const (
	chunkSize = 64 << 10
	// maxChunksPerPoll bounds what one poll reads from one file (16 MiB),
	// so a busy file does not starve the others or the health heartbeat.
	maxChunksPerPoll = 256
	// maxDirEntries bounds the search for a file rotated away while the
	// shipper was down.
	maxDirEntries = 10000
)

// metrics are the counters /metrics serves.
type metrics struct {
	lines, parseErrors, skipped, rotations, truncations atomic.Int64
	outputErrors, stateErrors, files                    atomic.Int64
}

// shipper follows the files the glob matches, one goroutine for all:
// run's loop polls every file, rescans the glob and saves positions.
type shipper struct {
	cfg     config
	out     io.Writer
	log     *slog.Logger
	now     func() time.Time
	extra   map[string]json.RawMessage // the added fields, encoded
	active  map[string]*follower       // by path; nil while the path names no file
	retired map[fileID]*follower       // rotated away, read until retireAt
	saved   map[fileID]position        // loaded positions not yet taken up

	chunk      []byte
	batch      bytes.Buffer
	enc        *json.Encoder
	batchLines int
	dirty      bool // positions changed since the last save
	lastOutErr time.Time

	m      metrics
	health health
}

func newShipper(cfg config, out io.Writer, log *slog.Logger) *shipper {
	s := &shipper{cfg: cfg, out: out, log: log, now: time.Now,
		extra:   map[string]json.RawMessage{},
		active:  map[string]*follower{},
		retired: map[fileID]*follower{},
		saved:   map[fileID]position{},
		chunk:   make([]byte, chunkSize),
	}
	for k, v := range cfg.fields {
		s.extra[k] = jsonString(v)
	}
	s.enc = json.NewEncoder(&s.batch)
	s.enc.SetEscapeHTML(false)
	s.health.stale = cfg.stale
	s.health.now = func() time.Time { return s.now() }
	return s
}

// run follows the files until ctx ends, then ships what has been written
// up to then, saves the positions and returns.
func (s *shipper) run(ctx context.Context) error {
	if err := s.start(); err != nil {
		return err
	}
	pollT, rescanT, flushT := time.NewTicker(s.cfg.poll), time.NewTicker(s.cfg.rescan), time.NewTicker(s.cfg.flush)
	defer pollT.Stop()
	defer rescanT.Stop()
	defer flushT.Stop()
	for {
		select {
		case <-ctx.Done():
			s.health.state.Store(stateStopping)
			s.rescan(false) // files created since the last scan are read too
			s.poll()
			err := s.saveState()
			s.closeAll()
			return err
		case <-pollT.C:
			s.poll()
		case <-rescanT.C:
			s.rescan(false)
		case <-flushT.C:
			if s.dirty {
				if err := s.saveState(); err != nil {
					s.log.Error("positions not saved", "error", err)
				}
			}
		}
	}
}

// start loads the positions, opens the files and checks that the state
// directory is writable by saving once.
func (s *shipper) start() error {
	if err := os.MkdirAll(s.cfg.stateDir, 0o755); err != nil {
		return err
	}
	if err := s.loadState(); err != nil {
		return err
	}
	s.rescan(true)
	s.recoverRotated()
	if err := s.saveState(); err != nil {
		return err
	}
	s.poll()
	s.health.state.Store(stateRunning)
	return nil
}

// rescan starts following the files that newly match the glob and
// forgets paths that name no file and no longer match.
func (s *shipper) rescan(atStartup bool) {
	matches, _ := filepath.Glob(s.cfg.pathGlob) // the pattern was checked
	for _, p := range matches {
		if s.active[p] == nil {
			s.active[p] = s.open(p, atStartup, true)
		}
	}
	for p, fl := range s.active {
		if fl == nil && !slices.Contains(matches, p) {
			delete(s.active, p)
		}
	}
	s.countFiles()
}

// open opens path and decides where to start reading it: at its saved
// position, else at the start (at the end for a file found at startup
// with -read-from-head=false). It returns nil if path names no readable
// file, or a file already followed under another path; a file rotated
// away that comes back under a followed name is taken up again.
func (s *shipper) open(path string, atStartup, loud bool) *follower {
	f, err := os.Open(path)
	if err != nil {
		if loud && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("cannot open", "path", path, "error", err)
		}
		return nil
	}
	fi, err := f.Stat()
	if err != nil || fi.IsDir() {
		f.Close()
		return nil
	}
	id := idOf(fi)
	if fl, ok := s.retired[id]; ok {
		f.Close()
		delete(s.retired, id)
		fl.path, fl.retireAt = path, time.Time{}
		return fl
	}
	for _, fl := range s.active {
		if fl != nil && fl.id == id {
			f.Close()
			return nil
		}
	}
	fl := &follower{path: path, f: f, id: id}
	if p, ok := s.saved[id]; ok {
		delete(s.saved, id)
		switch {
		case p.Offset > fi.Size():
			s.log.Info("saved position is past the end (truncated, or a new file with the old inode number), reading from the start", "path", path)
			s.m.truncations.Add(1)
		case !p.matches(f):
			s.log.Info("saved position is for an earlier file with this inode number, reading from the start", "path", path)
		default:
			fl.rewind(p.Offset)
		}
	} else if atStartup && !s.cfg.readFromHead {
		fl.rewind(fi.Size())
	}
	s.log.Info("following", "path", path, "offset", fl.offset)
	s.dirty = true
	return fl
}

// recoverRotated finds the files that have saved positions but were
// rotated to a name the glob does not match while the shipper was down,
// to ship the rest of them.
func (s *shipper) recoverRotated() {
	for id, p := range s.saved {
		delete(s.saved, id)
		dir := filepath.Dir(p.Path)
		d, err := os.Open(dir)
		if err != nil {
			s.log.Warn("rotated file not found, its unread lines are lost", "path", p.Path, "error", err)
			continue
		}
		names, _ := d.Readdirnames(maxDirEntries)
		d.Close()
		var found *follower
		for _, name := range names {
			path := filepath.Join(dir, name)
			if fi, err := os.Stat(path); err != nil || idOf(fi) != id || !fi.Mode().IsRegular() {
				continue
			}
			f, err := os.Open(path)
			if err != nil {
				continue
			}
			if fi, err := f.Stat(); err != nil || idOf(fi) != id || !p.matches(f) || fi.Size() < p.Offset {
				f.Close()
				continue
			}
			found = &follower{path: path, f: f, id: id, retireAt: s.now().Add(s.cfg.rotateWait)}
			found.rewind(p.Offset)
			break
		}
		if found == nil {
			s.log.Warn("rotated file not found, its unread lines are lost", "path", p.Path)
			continue
		}
		s.log.Info("finishing file rotated while stopped", "path", found.path, "offset", p.Offset)
		s.retired[id] = found
	}
}

// poll ships what was appended to every file and handles rotation,
// truncation and rotated files whose wait is over.
func (s *shipper) poll() {
	now := s.now()
	for id, fl := range s.retired { // before the files that replaced them
		s.drain(fl)
		if !now.Before(fl.retireAt) {
			s.finish(fl)
			delete(s.retired, id)
		}
	}
	for _, path := range slices.Sorted(maps.Keys(s.active)) {
		s.pollActive(path)
	}
	s.countFiles()
	s.health.beat()
}

func (s *shipper) pollActive(path string) {
	fl := s.active[path]
	if fl == nil {
		if fl = s.open(path, false, false); fl == nil {
			return
		}
		s.active[path] = fl
	}
	// Stat the path before reading: if it names another file by then,
	// the rename happened before the read, so the read gets every line
	// the old file will have (unless a writer keeps it open: rotate-wait).
	pi, perr := os.Stat(path)
	if fi, err := fl.f.Stat(); err == nil && fi.Size() < fl.readPos {
		s.log.Info("file truncated, reading from the start", "path", path)
		s.m.truncations.Add(1)
		fl.rewind(0)
		s.dirty = true
	}
	s.drain(fl)
	if perr == nil && idOf(pi) == fl.id {
		return
	}
	s.log.Info("file rotated", "path", path)
	s.m.rotations.Add(1)
	fl.retireAt = s.now().Add(s.cfg.rotateWait)
	s.retired[fl.id] = fl
	s.active[path] = nil
	if nf := s.open(path, false, false); nf != nil {
		s.active[path] = nf
		s.drain(nf)
	}
}

// drain reads fl from readPos to the end (bounded), ships its complete
// lines and moves its offset past them once they are written.
func (s *shipper) drain(fl *follower) {
	for range maxChunksPerPoll {
		n, err := fl.f.ReadAt(s.chunk, fl.readPos)
		if n > 0 {
			end, skipped := fl.consume(s.chunk[:n], s.cfg.maxLineBytes, s.record)
			s.m.skipped.Add(int64(skipped))
			if !s.writeBatch(fl, end) {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.log.Warn("read failed", "path", fl.path, "error", err)
			}
			return
		}
	}
}

// finish ships the last line of a rotated file if it has no newline,
// then closes the file.
func (s *shipper) finish(fl *follower) {
	if len(fl.pending) > 0 && !fl.skipping {
		s.record(fl.pending)
		s.writeBatch(fl, fl.readPos)
	}
	fl.f.Close()
	s.dirty = true
}

// writeBatch writes the records made since the last write; on success
// the offset moves to end (if end >= 0), on failure fl is rewound to
// read the lines again at the next poll.
func (s *shipper) writeBatch(fl *follower, end int64) bool {
	defer func() { s.batch.Reset(); s.batchLines = 0 }()
	if s.batch.Len() > 0 {
		if _, err := s.out.Write(s.batch.Bytes()); err != nil {
			s.m.outputErrors.Add(1)
			if now := s.now(); now.Sub(s.lastOutErr) > 10*time.Second {
				s.lastOutErr = now
				s.log.Error("writing records failed", "error", err)
			}
			fl.rewind(fl.offset)
			return false
		}
		s.m.lines.Add(int64(s.batchLines))
	}
	if end >= 0 {
		fl.offset = end
		s.dirty = true
	}
	return true
}

// record adds a line's record to the batch: the line's JSON object, or
// {"log": line} if it is not one, with the added fields set.
func (s *shipper) record(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(line, &rec); err != nil || rec == nil {
		s.m.parseErrors.Add(1)
		rec = map[string]json.RawMessage{"log": jsonString(string(line))}
	}
	maps.Copy(rec, s.extra)
	if err := s.enc.Encode(rec); err != nil { // cannot happen: rec came from valid JSON
		s.log.Error("encoding record failed", "error", err)
		return
	}
	s.batchLines++
}

func (s *shipper) closeAll() {
	for _, fl := range s.active {
		if fl != nil {
			fl.f.Close()
		}
	}
	for _, fl := range s.retired {
		fl.f.Close()
	}
}

func (s *shipper) countFiles() {
	n := len(s.retired)
	for _, fl := range s.active {
		if fl != nil {
			n++
		}
	}
	s.m.files.Store(int64(n))
}

// jsonString encodes v as a JSON string, leaving <, > and & as they are
// (invalid UTF-8 becomes U+FFFD).
func jsonString(v string) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
