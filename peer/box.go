package peer

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
)

// boxFormat is the first byte of every sealed message, so that a later
// format can be told apart from this one.
const boxFormat byte = 1

// ErrDecrypt is returned by Box.Open when a message was sealed with
// another key or other additional data, or was altered; AES-GCM cannot
// tell these apart.
var ErrDecrypt = errors.New("cannot decrypt: wrong key, wrong additional data, or altered message")

// Box seals and opens messages with AES-256-GCM under one key, each with a
// fresh random 96-bit nonce. A sealed message is a format byte, the nonce,
// the ciphertext and the 16-byte tag. Random nonces limit a key to 2^32
// messages, far more than a cluster's agents send.
//
// The additional data (aad) is authenticated but not stored: Open must be
// given the same bytes, so it binds a message to its context (a method, a
// direction, a file name). A Box is safe for concurrent use.
type Box struct {
	aead cipher.AEAD
}

// NewBox returns a Box for a key, typically one from DeriveKey.
func NewBox(key [KeySize]byte) *Box {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(fmt.Sprintf("peer: new AES cipher: %v", err)) // a 32-byte key never fails
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		panic(fmt.Sprintf("peer: new AES-GCM: %v", err))
	}
	return &Box{aead: aead}
}

// Overhead is how many bytes longer a sealed message is than its plaintext.
func (b *Box) Overhead() int { return 1 + b.aead.Overhead() }

// Seal encrypts and authenticates plaintext, and authenticates aad.
func (b *Box) Seal(plaintext, aad []byte) []byte {
	out := make([]byte, 1, 1+len(plaintext)+b.aead.Overhead())
	out[0] = boxFormat
	return b.aead.Seal(out, nil, plaintext, aad)
}

// Open checks and decrypts a message made by Seal with the same key and
// aad. It returns ErrDecrypt if either differs or the message was altered.
func (b *Box) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < b.Overhead() {
		return nil, fmt.Errorf("%w (%d bytes is too short)", ErrDecrypt, len(sealed))
	}
	if sealed[0] != boxFormat {
		return nil, fmt.Errorf("%w (unknown format %d)", ErrDecrypt, sealed[0])
	}
	pt, err := b.aead.Open(nil, nil, sealed[1:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}
