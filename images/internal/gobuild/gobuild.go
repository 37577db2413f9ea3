// Package gobuild builds the programs of the images: static, stripped,
// reproducible linux binaries, as mkimage and mkconformance need them.
package gobuild

import (
	"fmt"
	"io"
	"os"
	"os/exec"
)

// Build builds pkg for linux/arch into out with goCmd, in the module at
// dir ("" for the current directory's); go's output goes to stderr.
func Build(goCmd, arch, dir, pkg, out string, stderr io.Writer) error {
	cmd := exec.Command(goCmd, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}
