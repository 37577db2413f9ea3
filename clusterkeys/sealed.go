package clusterkeys

import (
	"fmt"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
)

// EtcdKey is where the control-plane agents keep the sealed shared keys
// in etcd, so that every etcd snapshot carries them and a restore on a
// new host gets back the CAs, the service-account key and the
// encryption key its data needs (k3s keeps its bootstrap data in its
// datastore for the same reason). They are sealed with the control-plane
// key, as in File; the API server never serves this key.
const EtcdKey = "/ecom-agent/cluster-shared"

// Sealed returns the cluster's shared keys, sealed: File, or an export
// of the installed keys on a node that holds no File.
func Sealed(root *hostfs.Root, cfg *config.Config) ([]byte, error) {
	sealed, err := LoadSealed(root, cfg)
	if err != nil || sealed != nil {
		return sealed, err
	}
	shared, err := Export(root, cfg)
	if err != nil {
		return nil, fmt.Errorf("this node holds no shared keys: %w", err)
	}
	return shared.Seal(cfg)
}
