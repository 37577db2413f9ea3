package bootstrap

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// NewEtcdToken returns a fresh initial-cluster-token for a cluster: its
// name and 64 random bits, so that two formations or restores never make
// the same cluster and member IDs.
func NewEtcdToken(cluster string) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("cluster token: %w", err)
	}
	return cluster + "-" + hex.EncodeToString(b), nil
}
