package peer

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// protocolVersion is the envelope format. It is inside the sealed
// plaintext rather than in the key, so that agents of different versions
// can still tell each other they differ.
const protocolVersion = 1

// Directions of an envelope.
const (
	kindRequest  = "request"
	kindResponse = "response"
)

// envelope is the sealed plaintext of every request and response.
type envelope struct {
	Version  int    `json:"v"`
	Kind     string `json:"kind"`
	Method   string `json:"method"`
	ID       string `json:"id"`   // request ID; a response carries its request's
	From     string `json:"from"` // sender's node ID
	FromName string `json:"from_name"`
	To       string `json:"to,omitempty"` // receiver's node ID, if the sender bound it
	TimeMs   int64  `json:"time_ms"`      // sender's clock, Unix milliseconds

	Body  json.RawMessage `json:"body,omitempty"`
	Error *RemoteError    `json:"error,omitempty"`
}

// envelopeAAD returns the additional data of an envelope. It binds the
// direction and the method, so that a response cannot be replayed as a
// request nor a request for one method to another; a response is also
// bound to its request's ID. Method names and IDs contain no NUL.
func envelopeAAD(kind, method, id string) []byte {
	s := PurposePeerRPC + "\x00" + kind + "\x00" + method
	if kind == kindResponse {
		s += "\x00" + id
	}
	return []byte(s)
}

// seal encodes and seals an envelope.
func (e *envelope) seal(b *Box) ([]byte, error) {
	pt, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode %s envelope: %w", e.Kind, err)
	}
	return b.Seal(pt, envelopeAAD(e.Kind, e.Method, e.ID)), nil
}

// openEnvelope opens a sealed envelope expected to be of kind for method
// (and, for responses, for request id) and checks that its plaintext says
// the same as the additional data.
func openEnvelope(b *Box, sealed []byte, kind, method, id string) (*envelope, error) {
	pt, err := b.Open(sealed, envelopeAAD(kind, method, id))
	if err != nil {
		return nil, err
	}
	var e envelope
	if err := json.Unmarshal(pt, &e); err != nil {
		return nil, fmt.Errorf("malformed %s envelope: %w", kind, err)
	}
	if e.Kind != kind || e.Method != method || (kind == kindResponse && e.ID != id) {
		return nil, errors.New("envelope contradicts its additional data")
	}
	return &e, nil
}

// orNull returns a JSON body, or JSON null if it is empty.
func orNull(body json.RawMessage) []byte {
	if len(body) == 0 {
		return []byte("null")
	}
	return body
}

// requestIDLen is the size of a request ID in bytes.
const requestIDLen = 16

type requestID [requestIDLen]byte

// newRequestID returns a random request ID, hex-encoded.
func newRequestID() string {
	var id requestID
	rand.Read(id[:]) // never fails (crypto/rand crashes the program instead)
	return hex.EncodeToString(id[:])
}

// parseRequestID decodes a hex request ID.
func parseRequestID(s string) (requestID, error) {
	var id requestID
	if len(s) != 2*requestIDLen {
		return id, fmt.Errorf("request ID %q is not %d hex digits", s, 2*requestIDLen)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("request ID %q: %w", s, err)
	}
	return id, nil
}

// validMethod reports whether name can be a method: 1 to 64 characters of
// lower-case letters, digits, '.' and '-', starting with a letter, so it
// fits a URL path segment and contains no NUL.
func validMethod(name string) bool {
	if len(name) == 0 || len(name) > 64 || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for _, c := range []byte(name) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
