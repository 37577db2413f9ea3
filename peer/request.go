package peer

import (
	"context"
	"encoding/json"
	"time"
)

// A HandlerFunc answers one method. Its result is encoded as JSON and
// sent sealed to the caller; so is its error, as a *RemoteError (return
// one from Errorf to choose the code; other errors arrive as
// CodeInternal). ctx ends when the caller goes away, the handler times
// out, or the server stops.
type HandlerFunc func(ctx context.Context, req Request) (any, error)

// Request is an authenticated request: it was sealed with this cluster's
// key, is fresh and was not seen before. The sender's node ID and name are
// what the sender says; any holder of the cluster secret could claim them.
type Request struct {
	// Method is the method called.
	Method string
	// NodeID and NodeName are the sender's.
	NodeID   string
	NodeName string
	// RemoteAddr is the TCP address the request came from.
	RemoteAddr string
	// Sent is the time on the sender's clock when it sent the request.
	Sent time.Time

	body json.RawMessage
}

// Decode decodes the request's JSON body into v. Unknown fields are
// ignored, so newer agents can add them. The error is a *RemoteError with
// CodeBadRequest, for the handler to return as it is.
func (r Request) Decode(v any) error {
	if err := json.Unmarshal(orNull(r.body), v); err != nil {
		return Errorf(CodeBadRequest, "decode %s request: %v", r.Method, err)
	}
	return nil
}
