//go:build e2e

package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/conformance"
	"github.com/ecom-platform/ecom-agent/integration/demo"
)

// testConformanceSubset is `make conformance` in small, on the demo's
// topology TestPackagePath brings up (three control-plane and two worker
// hosts from the packages, the suite's images imported before the
// kubelet starts): the upstream e2e suite's own specs,
// conformance.SubsetSpecs, a few of each of pod networking, Services,
// DNS, the API server's proxy, pods and probes, volumes, Deployments and
// Jobs, service accounts and authorization, and NetworkPolicy. Every spec
// must pass.
func testConformanceSubset(t *testing.T, c *demo.Cluster, suite string) {
	dir := t.TempDir()
	kubeconfig, err := conformance.Kubeconfig(c.ControlPlanes[0], dir)
	if err != nil {
		t.Fatal(err)
	}
	r := conformance.Run{SuiteDir: suite, Kubeconfig: kubeconfig, Kubectl: filepath.Join(kubeBins(t), "kubectl"), ReportDir: dir, Out: testWriter{t}}
	s, err := r.Pass(context.Background(), conformance.Subset)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d passed, %d failed, %d skipped in %s", len(s.Passed), len(s.Failed), len(s.Skipped), s.Took.Round(time.Second))
	for _, f := range s.Failed {
		t.Errorf("FAILED %s\n    %s", f.Name, f.Message)
	}
	for _, k := range s.Skipped {
		t.Errorf("skipped %s: %s", k.Name, k.Message)
	}
	if !s.Complete() {
		t.Errorf("the pass stopped early: %d interrupted, %d not reached", len(s.Interrupted), s.NotReached)
	}
	if got, want := len(s.Passed)+len(s.Failed)+len(s.Skipped), len(conformance.SubsetSpecs); got != want {
		t.Errorf("the suite ran %d specs, want %d", got, want)
	}
}

// conformanceInputs are the suite and its images, which `make e2e`
// builds; the images are checked before any host starts.
func conformanceInputs(t *testing.T) (suite, imagesDir string) {
	t.Helper()
	suite, imagesDir = os.Getenv("ECOM_E2E_SUITE"), os.Getenv("ECOM_E2E_IMAGES")
	if suite == "" || imagesDir == "" {
		t.Fatal("$ECOM_E2E_SUITE and $ECOM_E2E_IMAGES are not set: run the e2e suite with `make e2e`, which builds the suite and its images")
	}
	if _, err := conformance.Archives(imagesDir); err != nil {
		t.Fatal(err)
	}
	return suite, imagesDir
}

// testWriter sends the suite's output to the test's log, line by line.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
