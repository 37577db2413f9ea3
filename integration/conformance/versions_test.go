package conformance

import (
	"os"
	"regexp"
	"testing"

	"github.com/ecom-platform/ecom-agent/config"
)

// The suite judges the Kubernetes the nodes run: tools/e2e must build it
// from the same k8s.io/kubernetes version as tools/kube, the one the
// agent defaults to.
func TestSuiteVersionIsTheCluster(t *testing.T) {
	re := regexp.MustCompile(`(?m)^\s*(?:require\s+)?k8s\.io/kubernetes (v\S+)`)
	for _, mod := range []string{"../../tools/kube/go.mod", "../../tools/e2e/go.mod"} {
		data, err := os.ReadFile(mod)
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindSubmatch(data)
		if m == nil || string(m[1]) != config.DefaultKubernetesVersion {
			t.Errorf("%s requires k8s.io/kubernetes %s, want %s", mod, m, config.DefaultKubernetesVersion)
		}
	}
}
