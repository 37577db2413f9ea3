package token

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// DefaultPinPath is the logical path of the remembered CA hash, beside the
// agent's state file. `ecom-agent reset` must remove it with the rest of
// the node's state, so a reinstalled node trusts its new cluster afresh.
const DefaultPinPath = "/var/lib/ecom-agent/ca-pin"

// PinMode is the mode of the pin file: the hash is public, its integrity
// comes from the directory's owner.
const PinMode fs.FileMode = 0o644

// ErrCAChanged: the CA differs from the one pinned on first contact.
var ErrCAChanged = errors.New("CA changed since first contact")

// Pin remembers the first cluster CA hash a node sees (trust on first
// contact, for nodes that join with the cluster secret and no token) or
// the hash a token gave it, and refuses any other CA afterwards. The file
// holds the hash on one line. A Pin is safe for concurrent use within a
// process; only the agent writes the file.
type Pin struct {
	root *hostfs.Root
	path string
	mu   sync.Mutex
}

// NewPin returns the pin at the logical path under root; "" means
// DefaultPinPath.
func NewPin(root *hostfs.Root, path string) *Pin {
	if path == "" {
		path = DefaultPinPath
	}
	return &Pin{root: root, path: path}
}

// Path is the pin's logical path.
func (p *Pin) Path() string { return p.path }

// Load returns the pinned hash; ok is false when nothing is pinned yet.
func (p *Pin) Load() (hash string, ok bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.load()
}

func (p *Pin) load() (string, bool, error) {
	data, err := p.root.ReadFile(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read the CA pin %s: %w", p.path, err)
	}
	h := strings.TrimSpace(string(data))
	if prob := hashProblem(h); prob != "" {
		return "", false, fmt.Errorf("the CA pin %s is corrupt (%s); it is not replaced automatically: "+
			"check the cluster's CA hash (ecom-agent token create prints it), then write it there or remove the file", p.path, prob)
	}
	return h, true, nil
}

// Check accepts caHash if it is the pinned hash, or pins it if nothing is
// pinned yet (first is then true). A different hash is refused with
// ErrCAChanged and the pin is left as it is.
func (p *Pin) Check(caHash string) (first bool, err error) {
	h, err := ParseCAHash(caHash)
	if err != nil {
		return false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pinned, ok, err := p.load()
	if err != nil {
		return false, err
	}
	if ok {
		if subtle.ConstantTimeCompare([]byte(pinned), []byte(h)) != 1 {
			return false, fmt.Errorf("%w: pinned %s, now %s; this node may be talking to another cluster. "+
				"If this cluster's CA was really replaced, remove %s on this node and restart the agent", ErrCAChanged, pinned, h, p.path)
		}
		return false, nil
	}
	if _, err := p.root.WriteFile(p.path, []byte(h+"\n"), PinMode); err != nil {
		return false, fmt.Errorf("remember the CA hash: %w", err)
	}
	return true, nil
}

// CheckCert is Check for the hash of the single CA certificate in
// caCertPEM (see HashPEM).
func (p *Pin) CheckCert(caCertPEM []byte) (first bool, err error) {
	h, err := HashPEM(caCertPEM)
	if err != nil {
		return false, err
	}
	return p.Check(h)
}
