//go:build e2e

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

// platformPath is a TCP connection from a pod of the platform to a
// Service, and whether the seeded NetworkPolicies let it through.
type platformPath struct {
	from, container string // a Deployment's pods and their container
	to, port        string // a Service of namespace ecommerce
	allowed         bool
}

// platformPaths are the seeds' "frontend -> backend allowed, frontend ->
// prometheus blocked" and the paths around them, in both senses.
var platformPaths = []platformPath{
	{"frontend", "frontend", "backend-service", "8000", true},
	{"frontend", "frontend", "prometheus-service", "9090", false},
	{"frontend", "frontend", "postgresql-service", "5432", false},
	{"frontend", "frontend", "redis-service", "6379", false},
	{"backend", "backend", "postgresql-service", "5432", true},
	{"backend", "backend", "redis-service", "6379", true},
	{"backend", "backend", "prometheus-service", "9090", false},
	{"backend", "backend", "frontend-service", "80", false},
}

// testPlatformPaths connects, from one pod of each source, to each
// Service with bash's /dev/tcp (bash and timeout are in every image built
// above a Debian root): a connection either opens within 5 s or is held
// back by the policies. An allowed path is asked up to 3 times (a pod's
// policy rules may still be on their way when it has just started); a
// blocked one must fail every time it is asked, twice.
func testPlatformPaths(t *testing.T, cp *testhost.Host) {
	pods := map[string]string{}
	for _, p := range platformPaths {
		if pods[p.from] != "" {
			continue
		}
		out, err := kubectl(cp, "get", "pods", "-n", "ecommerce", "-l", "app=ecommerce,component="+p.from,
			"--field-selector", "status.phase=Running", "-o", "jsonpath={.items[0].metadata.name}")
		if err != nil || strings.TrimSpace(out) == "" {
			t.Fatalf("a running %s pod: %v %s", p.from, err, out)
		}
		pods[p.from] = strings.TrimSpace(out)
	}
	connect := func(p platformPath) error {
		script := fmt.Sprintf("exec 3<>/dev/tcp/%s.ecommerce.svc.cluster.local/%s", p.to, p.port)
		_, err := kubectl(cp, "-n", "ecommerce", "exec", pods[p.from], "-c", p.container, "--",
			"timeout", "5", "bash", "-c", script)
		return err
	}
	for _, p := range platformPaths {
		name := fmt.Sprintf("%s to %s:%s", p.from, p.to, p.port)
		var err error
		if p.allowed {
			for range 3 {
				if err = connect(p); err == nil {
					break
				}
				time.Sleep(2 * time.Second)
			}
			if err != nil {
				t.Errorf("%s: refused, the policies allow it: %v", name, err)
			}
			continue
		}
		for range 2 {
			if err = connect(p); err == nil {
				t.Errorf("%s: connected, the policies forbid it", name)
				break
			}
		}
	}
}
