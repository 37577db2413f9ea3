package status_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/invopop/jsonschema"

	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/status/statustest"
	"github.com/ecom-platform/ecom-agent/units"
)

var updateSchema = flag.Bool("update-schema", false, "rewrite status.schema.json from the Go types")

// statusSchema reflects the Status type, with its Go comments as the
// fields' descriptions. Every field is required unless it is omitempty or
// omitzero, and no other field is allowed: a script may rely on both.
func statusSchema(t *testing.T) []byte {
	t.Helper()
	r := &jsonschema.Reflector{BaseSchemaID: "https://github.com/ecom-platform/ecom-agent/schemas"}
	if err := r.AddGoComments("github.com/ecom-platform/ecom-agent/status", "."); err != nil {
		t.Fatal(err)
	}
	if err := r.AddGoComments("github.com/ecom-platform/ecom-agent/status", "../units"); err != nil {
		t.Fatal(err)
	}
	s := r.Reflect(&status.Status{})
	s.Title = "ecom-agent status"
	s.Description = "The document `ecom-agent status -o json` prints and the agent's control socket serves (GET /v1/status). " +
		"schema_version changes only when a field is removed or changes meaning; fields are added within a version."
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// The committed schema is the one the types give: a change of the Status
// types shows up in review as a change of the documented schema.
func TestStatusSchemaIsCurrent(t *testing.T) {
	got := statusSchema(t)
	if *updateSchema {
		if err := os.WriteFile("status.schema.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(got, status.StatusSchema) {
		t.Fatal("status.schema.json is stale: run `go test ./status -run TestStatusSchemaIsCurrent -update-schema` and review the change (a removed or changed field needs status.StatusSchemaVersion bumped)")
	}
}

// A status with every part filled validates; one with a renamed field or
// a wrong type does not.
func TestStatusValidatesAgainstItsSchema(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	s := status.Status{
		SchemaVersion: status.StatusSchemaVersion, Source: "daemon",
		Node:  status.Node{Name: "cp-1", Role: "control-plane", ID: "1f0e", Cluster: "shop", AdvertiseAddress: "10.0.0.1", Version: "v1"},
		Phase: nodestate.PhaseAPIReady, PhaseSince: now, StartedAt: now, Verdict: status.Degraded, Reasons: []string{"x"},
		Conditions:   []status.Condition{{Component: "membership", Reason: status.ReasonWaitForNodes, Message: "waiting for 1 more control-plane node"}},
		Units:        []status.UnitReport{{UnitStatus: units.UnitStatus{Name: "etcd.service", LoadState: "loaded", ActiveState: "active", SubState: "running"}, Journal: []string{"l"}}},
		Gossip:       []status.GossipMember{{Name: "cp-1", Address: "10.0.0.1:7946", State: "alive", Since: now}},
		Etcd:         &status.EtcdStatus{ClusterID: "c", Leader: "cp-1", Members: []status.EtcdMember{{ID: "a", Name: "cp-1", PeerURLs: []string{"https://10.0.0.1:2380"}, Started: true, Healthy: true, DBSize: 1}}},
		ControlPlane: &status.ControlPlaneStatus{Ready: true, ReadySince: now},
		APIServers:   []status.APIServerHealth{{Node: "cp-1", URL: "https://10.0.0.1:6443", Ready: true}},
		Seed:         &status.SeedStatus{Enabled: true, Seeder: "cp-1", Counts: map[string]int{"created": 3}},
		Certificates: &status.CertSummary{Count: 20, Nearest: "apiserver", NearestNotAfter: now},
		LastRenewal:  &status.RenewResult{At: now, Reason: "hourly", Renewed: []string{"apiserver"}},
		CheckedAt:    now,
	}
	doc, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := statustest.Validate(t, doc); err != nil {
		t.Fatalf("a full status does not validate: %v\n%s", err, doc)
	}
	renamed := bytes.Replace(doc, []byte(`"verdict"`), []byte(`"health"`), 1)
	if err := statustest.Validate(t, renamed); err == nil {
		t.Error("a status with verdict renamed validates")
	}
	wrongType := bytes.Replace(doc, []byte(`"schema_version":1`), []byte(`"schema_version":"1"`), 1)
	if err := statustest.Validate(t, wrongType); err == nil || !strings.Contains(err.Error(), "schema_version") {
		t.Errorf("a string schema_version: %v", err)
	}
}
