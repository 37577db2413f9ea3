package clusterkeys_test

import (
	stdjson "encoding/json"

	"github.com/ecom-platform/ecom-agent/clusterkeys"
)

// json encodes shared keys as Seal does before sealing.
func json(s *clusterkeys.Shared) ([]byte, error) { return stdjson.Marshal(s) }
