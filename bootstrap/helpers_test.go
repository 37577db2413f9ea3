package bootstrap

import (
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/hostfs"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// baseConfig is a control-plane node of a test cluster.
const baseConfig = `
cluster_name = "shop-test"
role = "control-plane"
node_name = "cp-1"
advertise_address = "10.77.0.11"
cluster_secret = "test-secret-0123456789abcdef0123456789"
control_plane_key = "test-cp-key-fedcba9876543210fedcba98765"

[apiserver]
extra_sans = ["api.shop.example.com", "192.0.2.10"]
`

// workerConfig is baseConfig for a worker: another role, no control-plane key.
var workerConfig = configtest.WorkerOf(baseConfig, "cp-1")

// testConfig parses baseConfig plus extra TOML, failing the test on error.
func testConfig(t testing.TB, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(baseConfig+extra), "test.toml", config.LoadOptions{})
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	return cfg
}

func testRoot(t testing.TB) *hostfs.Root {
	t.Helper()
	root, err := hostfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./bootstrap -update` to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got); run with -update if the change is intended:\n%s", name, diff)
	}
}

type configT = config.Config

// parseConfig parses a whole TOML document.
func parseConfig(t testing.TB, toml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(toml), "test.toml", config.LoadOptions{})
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	return cfg
}
