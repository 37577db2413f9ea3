package main

import (
	"bytes"
	"hash/fnv"
	"os"
	"syscall"
	"time"
)

// headMax is how many leading bytes of a file its position entry
// fingerprints: an inode number is reused soon after its file is deleted
// (as RotatingFileHandler deletes its oldest backup), and a saved offset
// must not be applied to a new file that happens to get the old number.
const headMax = 64

// fileID is a file's identity: it stays with the file across a rename.
type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}
}

// follower reads one open file. The bytes before offset have been
// shipped (offset is always the start of a line); the bytes from offset
// to readPos have been read: pending holds them, except while skipping
// an over-long line, whose bytes are dropped until its newline.
type follower struct {
	path     string // where the file was found; kept when it is rotated away
	f        *os.File
	id       fileID
	offset   int64
	readPos  int64
	pending  []byte
	skipping bool
	retireAt time.Time // for a rotated file: when to stop waiting for late writes

	headLen  int // fingerprint of the file's first headLen bytes
	headHash uint64
}

// consume takes data read at readPos: it calls emit for each complete
// line not longer than max bytes (without its newline; the slice is only
// valid during the call) and returns the offset after the last newline
// in data, or -1 if data has none, and how many over-long lines began.
func (fl *follower) consume(data []byte, max int, emit func([]byte)) (lineEnd int64, skipped int) {
	lineEnd = -1
	pos := fl.readPos
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if !fl.skipping {
				fl.pending = append(fl.pending, data...)
				if len(fl.pending) > max {
					fl.pending, fl.skipping = fl.pending[:0], true
					skipped++
				}
			}
			pos += int64(len(data))
			break
		}
		switch {
		case fl.skipping:
			fl.skipping = false
		case len(fl.pending)+i > max:
			skipped++
		case len(fl.pending) > 0:
			fl.pending = append(fl.pending, data[:i]...)
			emit(fl.pending)
		default:
			emit(data[:i])
		}
		fl.pending = fl.pending[:0]
		pos += int64(i) + 1
		data = data[i+1:]
		lineEnd = pos
	}
	fl.readPos = pos
	return lineEnd, skipped
}

// rewind forgets what was read after offset, to read it again.
func (fl *follower) rewind(offset int64) {
	fl.offset, fl.readPos = offset, offset
	fl.pending, fl.skipping = fl.pending[:0], false
	if offset == 0 {
		fl.headLen, fl.headHash = 0, 0
	}
}

// fingerprint returns the fingerprint of the file's first bytes, as
// many as are shipped up to headMax, reading them if not yet known.
func (fl *follower) fingerprint() (int, uint64) {
	want := int(min(fl.offset, headMax))
	if fl.headLen < want {
		if n, h, ok := headHash(fl.f, want); ok {
			fl.headLen, fl.headHash = n, h
		}
	}
	return fl.headLen, fl.headHash
}

// headHash hashes the first n bytes of f; ok is false if it has fewer.
func headHash(f *os.File, n int) (int, uint64, bool) {
	buf := make([]byte, n)
	if m, _ := f.ReadAt(buf, 0); m < n {
		return 0, 0, false
	}
	h := fnv.New64a()
	h.Write(buf)
	return n, h.Sum64(), true
}
