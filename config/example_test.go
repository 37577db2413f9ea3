package config

import (
	"bytes"
	"os"
	"testing"
)

// The embedded example is a copy: packaging/config.toml cannot be
// embedded from here (go:embed reads no parent directory).
func TestEmbeddedExampleIsThePackagedOne(t *testing.T) {
	packaged, err := os.ReadFile("../packaging/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(Example, packaged) {
		t.Errorf("config/example.toml differs from packaging/config.toml: copy it (cp packaging/config.toml config/example.toml)")
	}
}
