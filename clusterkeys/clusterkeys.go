// Package clusterkeys is what every control-plane node of a cluster must
// share: the CA key pairs, the service-account key and the key Secrets
// are encrypted with at rest; sealed for travel and for the disk, opened
// and installed where the components read them.
package clusterkeys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/peer"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/token"
)

// File holds, sealed, what every control-plane node of the cluster
// must share: the CA key pairs, the service-account key and the key
// Secrets are encrypted with at rest. The founding node writes it before
// it persists its formation commit; every other control-plane node writes
// it when it receives the commit or is let into the cluster. It is sealed
// with a key derived from the control-plane key, which workers never
// hold, so neither a copy of /var/lib/ecom-agent nor the cluster secret
// gives the CA keys away.
const File = bootstrap.AgentStateDir + "/cluster-shared.sealed"

// Shared is the content of File.
type Shared struct {
	Bundle *pki.Bundle `json:"bundle"`
	// EncryptionKey is the secretbox key of kube-apiserver's encryption
	// at rest; every API server must hold the same one.
	EncryptionKey []byte `json:"encryption_key"`
}

// sharedAAD binds a sealed Shared to its purpose and cluster.
func aad(cluster string) []byte { return []byte("ecom-agent shared v1 " + cluster) }

// box is the sealing box of the control-plane key; an error on a node
// without one (a worker).
func box(cfg *config.Config) (*peer.Box, error) {
	key := cfg.ControlPlaneSecret()
	if key == nil {
		return nil, errors.New("this node holds no control-plane key, so it cannot seal or open the cluster's CA keys (workers never do)")
	}
	return peer.NewBox(peer.DeriveKey(key, peer.PurposeCABundle, cfg.ClusterName)), nil
}

// legacyBox is the box of agents before the control-plane key, derived
// from the cluster secret; only to migrate File.
func legacyBox(cfg *config.Config) *peer.Box {
	return peer.NewBox(peer.DeriveKey(cfg.Secret(), peer.PurposeCABundle, cfg.ClusterName))
}

// New generates a new cluster's shared secrets, in memory.
func New(cfg *config.Config) (*Shared, error) {
	b, err := pki.GenerateBundle(bootstrap.PKIOptions(cfg))
	if err != nil {
		return nil, err
	}
	key, err := bootstrap.NewEncryptionKey()
	if err != nil {
		return nil, err
	}
	return &Shared{Bundle: b, EncryptionKey: key}, nil
}

// Seal encrypts s for the cluster of cfg.
func (s *Shared) Seal(cfg *config.Config) ([]byte, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	b, err := box(cfg)
	if err != nil {
		return nil, err
	}
	return b.Seal(data, aad(cfg.ClusterName)), nil
}

// Open decrypts what Seal made for the cluster of cfg.
func Open(cfg *config.Config, sealed []byte) (*Shared, error) {
	b, err := box(cfg)
	if err != nil {
		return nil, err
	}
	return open(b, cfg, sealed)
}

func open(b *peer.Box, cfg *config.Config, sealed []byte) (*Shared, error) {
	data, err := b.Open(sealed, aad(cfg.ClusterName))
	if err != nil {
		return nil, fmt.Errorf("open the cluster's shared keys (is control_plane_key the same on every control-plane node?): %w", err)
	}
	var s Shared
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode the cluster's shared keys: %w", err)
	}
	if s.Bundle == nil || len(s.EncryptionKey) != 32 {
		return nil, errors.New("the cluster's shared keys are incomplete")
	}
	return &s, nil
}

// SaveSealed writes sealed shared keys to File, atomically, 0600.
func SaveSealed(root *hostfs.Root, sealed []byte) error {
	if err := root.MkdirAll(bootstrap.AgentStateDir, 0o700); err != nil {
		return err
	}
	_, err := root.WriteFile(File, sealed, 0o600)
	return err
}

// LoadSealed reads File; nil if there is none. A file sealed by an agent
// of before the control-plane key (with the cluster secret) is sealed
// again with the control-plane key and rewritten.
func LoadSealed(root *hostfs.Root, cfg *config.Config) ([]byte, error) {
	data, err := root.ReadFile(File)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if _, err := Open(cfg, data); err == nil {
		return data, nil
	}
	old, lerr := open(legacyBox(cfg), cfg, data)
	if lerr != nil {
		return data, nil // Open, later, says what is wrong
	}
	resealed, err := old.Seal(cfg)
	if err != nil {
		return nil, err
	}
	if err := SaveSealed(root, resealed); err != nil {
		return nil, fmt.Errorf("seal %s again with the control-plane key: %w", root.Path(File), err)
	}
	return resealed, nil
}

// Install writes the shared keys where the node's components read them:
// the CAs and service-account key into the PKI directory (never replacing
// a different CA: that is an error for an operator) and the encryption
// config, unless one exists with the same key.
//
// The cluster CA is pinned on first contact (token.DefaultPinPath): a node
// never installs keys of a cluster CA other than the first it was given.
func (s *Shared) Install(root *hostfs.Root, cfg *config.Config) error {
	ca, ok := s.Bundle.CAs[pki.CA]
	if !ok {
		return errors.New("the cluster's shared keys hold no cluster CA")
	}
	if _, err := token.NewPin(root, "").CheckCert(ca.Cert); err != nil {
		return err
	}
	if _, err := pki.NewStore(root, bootstrap.PKIOptions(cfg)).InstallBundle(s.Bundle); err != nil {
		return err
	}
	old, err := root.ReadFile(bootstrap.EncryptionConfigFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		key, err := bootstrap.EncryptionKey(old)
		if err == nil && bytes.Equal(key, s.EncryptionKey) {
			return nil
		}
		return fmt.Errorf("%s holds another encryption key than the cluster's: this node was part of another cluster; "+
			"run `ecom-agent reset` on it (or move /etc/kubernetes aside) and join again", root.Path(bootstrap.EncryptionConfigFile))
	}
	enc, err := bootstrap.EncryptionConfig(s.EncryptionKey)
	if err != nil {
		return err
	}
	if err := root.MkdirAll(bootstrap.KubernetesDir, 0o755); err != nil {
		return err
	}
	_, err = root.WriteFile(bootstrap.EncryptionConfigFile, enc, 0o600)
	return err
}

// Export reads the shared keys back from an installed node, for a
// node that holds no File (one whose cluster was founded before it
// had one, or whose file was lost).
func Export(root *hostfs.Root, cfg *config.Config) (*Shared, error) {
	b, err := pki.NewStore(root, bootstrap.PKIOptions(cfg)).ExportBundle()
	if err != nil {
		return nil, err
	}
	enc, err := root.ReadFile(bootstrap.EncryptionConfigFile)
	if err != nil {
		return nil, err
	}
	key, err := bootstrap.EncryptionKey(enc)
	if err != nil {
		return nil, err
	}
	return &Shared{Bundle: b, EncryptionKey: key}, nil
}
