package peer

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"strings"
)

// Purposes of keys derived from the cluster secret. Each use of the
// secret has its own purpose string, so a key derived for one purpose
// tells nothing about another, and the gossip key (derived with its own
// info string) is independent of all of them. Changing a purpose changes
// the key of every cluster, and old and new agents could no longer talk.
const (
	// PurposePeerRPC derives the key of the peer request/response channel.
	PurposePeerRPC = "ecom-agent peer-rpc v1"
	// PurposeControlPlaneRPC derives, from the control-plane key, the key
	// of the methods only control-plane nodes may call.
	PurposeControlPlaneRPC = "ecom-agent control-plane-rpc v1"
	// PurposeCABundle derives the key that seals the CA key bundle shipped
	// to other control-plane nodes, as kubeadm's --certificate-key does.
	PurposeCABundle = "ecom-agent ca-bundle v1"
)

// KeySize is the size of derived keys in bytes: AES-256.
const KeySize = 32

// DeriveKey returns the key for a purpose within a cluster: HKDF-SHA256
// over the secret, with no salt (RFC 5869 then uses a block of zeros) and
// purpose + "\x00" + clusterName as the info. Two clusters that share a
// secret but not a name get different keys.
//
// DeriveKey panics if purpose contains a NUL byte, which would make two
// different (purpose, clusterName) pairs share an info string.
func DeriveKey(secret []byte, purpose, clusterName string) [KeySize]byte {
	if strings.IndexByte(purpose, 0) >= 0 {
		panic(fmt.Sprintf("peer: key purpose %q contains a NUL byte", purpose))
	}
	k, err := hkdf.Key(sha256.New, secret, nil, purpose+"\x00"+clusterName, KeySize)
	if err != nil {
		// Only possible for keys longer than 255 hash blocks, or in
		// FIPS 140-only mode with a secret shorter than 14 bytes, which
		// Options.check refuses.
		panic(fmt.Sprintf("peer: derive %s key: %v", purpose, err))
	}
	return [KeySize]byte(k)
}
