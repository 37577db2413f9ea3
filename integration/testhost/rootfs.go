package testhost

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// buildRootfsScript builds the cached root file system; `make rootfs` runs
// the same file, and the cache key is a hash of its content.
//
//go:embed build-rootfs.sh
var buildRootfsScript []byte

// rootfsBuildTimeout bounds a cold build: mmdebstrap takes about a minute
// here, more on a slow mirror; waiting for another process's build counts too.
const rootfsBuildTimeout = 30 * time.Minute

// EnsureRootfs returns the directory of the cached root file system that
// hosts boot from, building it first if cacheDir lacks it (about a minute,
// and needs the Debian mirror). Concurrent callers build it once.
func EnsureRootfs(ctx context.Context, cacheDir string, logf func(string, ...any)) (string, error) {
	tmp, err := os.CreateTemp("", "ecom-testhost-build-rootfs-*.sh")
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buildRootfsScript); err != nil {
		tmp.Close()
		return "", fmt.Errorf("rootfs: write script: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("rootfs: write script: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, rootfsBuildTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", tmp.Name())
	cmd.Env = []string{machinePath, "LANG=C", "ECOM_TESTHOST_CACHE=" + cacheDir}
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("rootfs: build-rootfs.sh: %w\n%s", err, tail(stderr.String(), 30))
	}
	if stderr.Len() > 0 { // it only talks when it builds or waits for a build
		logf("testhost: root file system ready after %v: %s", time.Since(start).Round(time.Second), lastLine(stderr.String()))
	}
	dir := strings.TrimSpace(lastLine(stdout.String()))
	if _, err := os.Stat(filepath.Join(dir, "lib/systemd/systemd")); err != nil {
		return "", fmt.Errorf("rootfs: %q printed by build-rootfs.sh is no root file system: %w", dir, err)
	}
	return dir, nil
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
