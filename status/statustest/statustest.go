// Package statustest checks status documents against the committed
// schema, for the tests of the packages that produce them.
package statustest

import (
	"bytes"
	"encoding/json"
	"testing"

	jsv "github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/ecom-platform/ecom-agent/status"
)

// Validate checks doc against status.StatusSchema.
func Validate(t testing.TB, doc []byte) error {
	t.Helper()
	c := jsv.NewCompiler()
	var schema any
	if err := json.Unmarshal(status.StatusSchema, &schema); err != nil {
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
