package status

import _ "embed"

// StatusSchema is the JSON Schema (draft 2020-12) of the Status document
// that `ecom-agent status -o json` prints and the control socket serves,
// generated from the Go types and their comments (see schema_test.go).
// `ecom-agent status --schema` prints it.
//
//go:embed status.schema.json
var StatusSchema []byte
