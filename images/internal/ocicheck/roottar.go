package ocicheck

import (
	"archive/tar"
	"bytes"
	"testing"
)

// RootTar is an uncompressed tar of executable one-byte files at the
// given paths ("./usr/bin/dig"): a stand-in for a Debian root in the
// tests of the images built above one.
func RootTar(t testing.TB, files ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f, Typeflag: tar.TypeReg, Mode: 0o755, Size: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
