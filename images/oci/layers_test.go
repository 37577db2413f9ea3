package oci

import (
	"bytes"
	"crypto/sha256"
	"sync"
	"testing"
)

// The archives' reproducibility rests on compress/gzip giving the same
// bytes for the same tar; the memo of compressed layers hides that from
// the tests that write an image twice in one process, so it is checked
// here with the memo emptied between the two.
func TestGzipDeterministic(t *testing.T) {
	tarball := bytes.Repeat([]byte("ecom-agent layer\n"), 10000)
	id := sha256.Sum256(tarball)
	first, err := gzipped(id, tarball)
	if err != nil {
		t.Fatal(err)
	}
	compressed = sync.Map{}
	second, err := gzipped(id, tarball)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("the same layer compressed twice differs")
	}
	if again, _ := gzipped(id, tarball); &again[0] != &second[0] {
		t.Error("a layer compressed before was compressed again")
	}
}
