package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// Kubeconfig copies h's admin kubeconfig into dir (0600) and returns its
// path: it names h's API server at h's address, which this machine
// reaches (the clusters the suite runs on set no control_plane_endpoint).
func Kubeconfig(h *testhost.Host, dir string) (string, error) {
	data, err := h.ReadFile("/etc/kubernetes/admin.conf")
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, "admin.conf")
	return file, os.WriteFile(file, data, 0o600)
}

// Archives lists the image archives in dir (tools/e2e/images.sh prints
// it): what every node imports for the suite.
func Archives(dir string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no image archives in %s: run tools/e2e/images.sh", dir)
	}
	slices.Sort(paths)
	return paths, nil
}
