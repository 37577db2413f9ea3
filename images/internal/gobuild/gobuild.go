// Package gobuild builds the programs of the images: static, stripped,
// reproducible linux binaries, as mkimage and mkconformance need them.
package gobuild

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Build builds pkg for linux/arch into out with goCmd, in the module at
// dir ("" for the current directory's); go's output goes to stderr.
func Build(goCmd, arch, dir, pkg, out string, stderr io.Writer) error {
	return BuildTags(goCmd, arch, dir, pkg, out, nil, stderr)
}

// BuildTags is Build with build tags.
func BuildTags(goCmd, arch, dir, pkg, out string, tags []string, stderr io.Writer) error {
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w"}
	if len(tags) > 0 {
		args = append(args, "-tags="+strings.Join(tags, ","))
	}
	cmd := exec.Command(goCmd, append(args, "-o", out, pkg)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}
