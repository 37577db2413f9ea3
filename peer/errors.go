package peer

import (
	"errors"
	"fmt"
	"time"
)

// Codes of a RemoteError. Handlers may use others; these are the ones the
// agent's protocols and this package use.
const (
	// CodeRefused: the peer's agent understood the request and said no,
	// e.g. a candidate that already promised another seed.
	CodeRefused = "refused"
	// CodeNotReady: the peer cannot answer yet; try again later.
	CodeNotReady = "not-ready"
	// CodeConflict: the request contradicts the peer's state.
	CodeConflict = "conflict"
	// CodeBadRequest: the request body could not be decoded.
	CodeBadRequest = "bad-request"
	// CodeUnknownMethod: the peer has no handler for the method, e.g. an
	// older agent.
	CodeUnknownMethod = "unknown-method"
	// CodeUnsupportedVersion: the peer speaks another protocol version.
	CodeUnsupportedVersion = "unsupported-version"
	// CodeWrongNode: the request, made with CallNode, reached a node with
	// another node ID, e.g. an address now used by a reinstalled host.
	CodeWrongNode = "wrong-node"
	// CodeUnavailable: the peer could not take the request (e.g. it is
	// shutting down or overloaded); try again later.
	CodeUnavailable = "unavailable"
	// CodeInternal: the handler failed with an error that is not a
	// RemoteError, or panicked.
	CodeInternal = "internal"
)

// RemoteError is an error returned by a peer's handler, delivered sealed,
// so the caller knows the peer's agent itself answered. Handlers return
// one (see Errorf) to choose the code; other errors arrive with
// CodeInternal. Callers find it with errors.As.
type RemoteError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Errorf returns a RemoteError with a code and a formatted message.
func Errorf(code, format string, args ...any) *RemoteError {
	return &RemoteError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *RemoteError) Error() string { return e.Code + ": " + e.Message }

// ErrUnauthorized is wrapped by a Call error when the peer rejected the
// request as unauthenticated: it has another cluster secret or cluster
// name, or (also matching ErrClockSkew) its clock is too far from ours.
var ErrUnauthorized = errors.New("the cluster secret or cluster name differ")

// ErrClockSkew is wrapped by a Call error when the peer rejected the
// request and its clock differs from ours by more than ReplayWindow. Such
// an error also matches ErrUnauthorized.
var ErrClockSkew = errors.New("clock skew")

// skewError is a rejection explained by the peer's Date header.
type skewError struct {
	skew time.Duration // peer's clock minus ours
}

func (e *skewError) Error() string {
	dir, d := "ahead of", e.skew
	if d < 0 {
		dir, d = "behind", -d
	}
	return fmt.Sprintf("its clock is %s %s ours (more than the %s allowed); check NTP on both nodes",
		d.Round(time.Second), dir, ReplayWindow)
}

func (e *skewError) Is(target error) bool {
	return target == ErrClockSkew || target == ErrUnauthorized
}

// controlPlaneRejection is the rejection of a control-plane method: the
// peer holds another control-plane key, or none (a worker).
type controlPlaneRejection struct{}

func (controlPlaneRejection) Error() string {
	return "the control-plane key or cluster name differ, or the peer holds none (a worker)"
}

func (controlPlaneRejection) Is(target error) bool { return target == ErrUnauthorized }
