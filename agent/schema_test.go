package agent

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/invopop/jsonschema"
	jsv "github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/ecom-platform/ecom-agent/units"
)

var updateSchema = flag.Bool("update-schema", false, "rewrite status.schema.json from the Go types")

// statusSchema reflects the Status type, with its Go comments as the
// fields' descriptions. Every field is required unless it is omitempty or
// omitzero, and no other field is allowed: a script may rely on both.
func statusSchema(t *testing.T) []byte {
	t.Helper()
	r := &jsonschema.Reflector{BaseSchemaID: "https://github.com/ecom-platform/ecom-agent/schemas"}
	if err := r.AddGoComments("github.com/ecom-platform/ecom-agent/agent", "."); err != nil {
		t.Fatal(err)
	}
	if err := r.AddGoComments("github.com/ecom-platform/ecom-agent/agent", "../units"); err != nil {
		t.Fatal(err)
	}
	s := r.Reflect(&Status{})
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
	if !bytes.Equal(got, StatusSchema) {
		t.Fatal("status.schema.json is stale: run `go test ./agent -run TestStatusSchemaIsCurrent -update-schema` and review the change (a removed or changed field needs StatusSchemaVersion bumped)")
	}
}

// ValidateStatus is shared with the e2e tests through the same schema.
func validateStatus(t *testing.T, doc []byte) error {
	t.Helper()
	c := jsv.NewCompiler()
	var schema any
	if err := json.Unmarshal(StatusSchema, &schema); err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("status.schema.json", schema); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("status.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsv.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	return sch.Validate(inst)
}

// A status with every part filled validates; one with a renamed field or
// a wrong type does not.
func TestStatusValidatesAgainstItsSchema(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	s := Status{
		SchemaVersion: StatusSchemaVersion, Source: "daemon",
		Node:  Node{Name: "cp-1", Role: "control-plane", ID: "1f0e", Cluster: "shop", AdvertiseAddress: "10.0.0.1", Version: "v1"},
		Phase: PhaseAPIReady, PhaseSince: now, StartedAt: now, Verdict: Degraded, Reasons: []string{"x"},
		Units:        []UnitReport{{UnitStatus: units.UnitStatus{Name: "etcd.service", LoadState: "loaded", ActiveState: "active", SubState: "running"}, Journal: []string{"l"}}},
		Gossip:       []GossipMember{{Name: "cp-1", Address: "10.0.0.1:7946", State: "alive", Since: now}},
		Etcd:         &EtcdStatus{ClusterID: "c", Leader: "cp-1", Members: []EtcdMember{{ID: "a", Name: "cp-1", PeerURLs: []string{"https://10.0.0.1:2380"}, Started: true, Healthy: true, DBSize: 1}}},
		ControlPlane: &ControlPlaneStatus{Ready: true, ReadySince: now},
		APIServers:   []APIServerHealth{{Node: "cp-1", URL: "https://10.0.0.1:6443", Ready: true}},
		Seed:         &SeedStatus{Enabled: true, Seeder: "cp-1", Counts: map[string]int{"created": 3}},
		Certificates: &CertSummary{Count: 20, Nearest: "apiserver", NearestNotAfter: now},
		LastRenewal:  &RenewResult{At: now, Reason: "hourly", Renewed: []string{"apiserver"}},
		CheckedAt:    now,
	}
	doc, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := validateStatus(t, doc); err != nil {
		t.Fatalf("a full status does not validate: %v\n%s", err, doc)
	}
	renamed := bytes.Replace(doc, []byte(`"verdict"`), []byte(`"health"`), 1)
	if err := validateStatus(t, renamed); err == nil {
		t.Error("a status with verdict renamed validates")
	}
	wrongType := bytes.Replace(doc, []byte(`"schema_version":1`), []byte(`"schema_version":"1"`), 1)
	if err := validateStatus(t, wrongType); err == nil || !strings.Contains(err.Error(), "schema_version") {
		t.Errorf("a string schema_version: %v", err)
	}
	// The daemon's own document, from a real run, validates too.
	d, _, _ := runUntilReady(t, parse(t, cpConfig(t)))
	own, _ := json.Marshal(d.Status())
	if err := validateStatus(t, own); err != nil {
		t.Errorf("the daemon's status does not validate: %v\n%s", err, own)
	}
}
