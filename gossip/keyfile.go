package gossip

import (
	"fmt"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// KeyFileMode is the mode of a stored gossip key: it admits a node to
// gossip, so root reads it alone.
const KeyFileMode = 0o600

// ReadKeyFile reads the gossip key stored at the logical path under root
// (raw bytes, as WriteKeyFile writes them). A missing file is an
// fs.ErrNotExist.
func ReadKeyFile(root *hostfs.Root, path string) (Key, error) {
	data, err := root.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) != keySize {
		return nil, fmt.Errorf("the gossip key %s is %d bytes, not %d; remove it and restart the agent to join again", path, len(data), keySize)
	}
	return Key(data), nil
}

// WriteKeyFile stores key at the logical path under root, replacing the
// file whole (never half-written).
func WriteKeyFile(root *hostfs.Root, path string, key Key) error {
	if len(key) != keySize {
		return fmt.Errorf("a gossip key is %d bytes, not %d", len(key), keySize)
	}
	_, err := root.WriteFile(path, key, KeyFileMode)
	return err
}
