package status_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The CLI prints a node's status without the daemon: status and its
// collection must never depend on the daemon's packages.
func TestStatusDoesNotImportTheDaemon(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the dependencies with")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".", "./collect").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "github.com/ecom-platform/ecom-agent/agent" || strings.HasPrefix(dep, "github.com/ecom-platform/ecom-agent/agent/") {
			t.Errorf("status depends on the daemon's %s", dep)
		}
	}
}
