package gossip

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
)

// keyInfo is the HKDF info string of the gossip key. Other uses of the
// cluster secret derive their keys with other info strings, so knowing one
// key tells nothing about another. Changing it changes every cluster's
// gossip key, and old and new agents could no longer talk.
const keyInfo = "ecom-agent gossip v1"

// keySize selects AES-256-GCM in memberlist's keyring.
const keySize = 32

// Key is a gossip encryption key; it never prints itself.
type Key []byte

// String hides the key.
func (k Key) String() string { return "[redacted]" }

// GoString hides the key from %#v.
func (k Key) GoString() string { return `"[redacted]"` }

// Format hides the key from every verb.
func (k Key) Format(f fmt.State, _ rune) { fmt.Fprint(f, "[redacted]") }

// KeySize is the size of a gossip key in bytes.
const KeySize = keySize

// DeriveKey returns the gossip encryption key for a cluster secret:
// HKDF-SHA256 over the secret, with no salt (RFC 5869 then uses a block
// of zeros) and keyInfo as the info.
func DeriveKey(secret []byte) (Key, error) {
	key, err := hkdf.Key(sha256.New, secret, nil, keyInfo, keySize)
	if err != nil {
		return nil, fmt.Errorf("derive gossip key: %w", err)
	}
	return key, nil
}
