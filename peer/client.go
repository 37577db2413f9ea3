package peer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client timeouts and limits below the call timeout.
const (
	dialTimeout       = 5 * time.Second
	clientIdleTimeout = time.Minute // under the server's, so we drop idle connections first
	maxErrorBody      = 256
)

// Client calls methods on other nodes' Servers. It is safe for concurrent
// use.
type Client struct {
	s    *settings
	http *http.Client
}

// NewClient returns a Client for the cluster and node in opts.
func NewClient(opts Options) (*Client, error) {
	s, err := opts.settings()
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:               nil, // peers are on the cluster network; never use HTTP_PROXY
		DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     clientIdleTimeout,
		DisableCompression:  true, // sealed bodies do not compress
	}
	return &Client{s: s, http: &http.Client{Transport: tr}}, nil
}

// Close closes idle connections. The Client remains usable.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Call calls method on the node at addr ("host:port") with req encoded as
// JSON, and decodes the answer into resp (a pointer, or nil to ignore it).
// The call is bounded by Options.CallTimeout.
//
// Every error names the peer and the method. If the peer's agent answered
// with an error, errors.As finds a *RemoteError with its code. If the peer
// rejected the request as unauthenticated, errors.Is matches
// ErrUnauthorized, and also ErrClockSkew when the peer's clock is too far
// from ours. Any other error is a transport failure: the request may or
// may not have reached the peer's handler.
func (c *Client) Call(ctx context.Context, addr, method string, req, resp any) error {
	return c.call(ctx, addr, "", method, req, resp)
}

// CallNode is Call to the node with ID nodeID. The ID is sealed into the
// request, so a captured request cannot be replayed to another node, and a
// node with another ID at addr answers with CodeWrongNode.
func (c *Client) CallNode(ctx context.Context, addr, nodeID, method string, req, resp any) error {
	if nodeID == "" {
		return fmt.Errorf("call %s on peer %s: empty node ID", method, addr)
	}
	return c.call(ctx, addr, nodeID, method, req, resp)
}

func (c *Client) call(ctx context.Context, addr, to, method string, req, resp any) error {
	if !validMethod(method) {
		return fmt.Errorf("call %q on peer %s: invalid method name", method, addr)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("call %s on peer %q: address is not host:port: %w", method, addr, err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("call %s on peer %s: encode request: %w", method, addr, err)
	}
	env := envelope{
		Version:  protocolVersion,
		Kind:     kindRequest,
		Method:   method,
		ID:       newRequestID(),
		From:     c.s.nodeID,
		FromName: c.s.nodeName,
		To:       to,
		TimeMs:   c.s.now().UnixMilli(),
		Body:     body,
	}
	box, err := c.s.boxFor(method)
	if err != nil {
		return fmt.Errorf("call %s on peer %s: %w", method, addr, err)
	}
	sealed, err := env.seal(box)
	if err != nil {
		return fmt.Errorf("call %s on peer %s: %w", method, addr, err)
	}
	if int64(len(sealed)) > c.s.maxBytes {
		return fmt.Errorf("call %s on peer %s: the request of %d bytes exceeds the limit of %d", method, addr, len(sealed), c.s.maxBytes)
	}

	ctx, cancel := context.WithTimeout(ctx, c.s.callTimeout)
	defer cancel()
	u := (&url.URL{Scheme: "http", Host: addr, Path: "/v1/peer/" + method}).String()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(sealed))
	if err != nil {
		return fmt.Errorf("call %s on peer %s: %w", method, addr, err)
	}
	hreq.Header.Set("Content-Type", "application/octet-stream")
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return c.transportError(ctx, addr, method, err)
	}
	defer hresp.Body.Close()

	switch hresp.StatusCode {
	case http.StatusOK:
	case http.StatusForbidden:
		return fmt.Errorf("peer %s rejected our %s request: %w", addr, method, c.rejection(hresp, box))
	case http.StatusRequestEntityTooLarge:
		return fmt.Errorf("peer %s rejected our %s request of %d bytes as too large", addr, method, len(sealed))
	default:
		snippet, _ := io.ReadAll(io.LimitReader(hresp.Body, maxErrorBody))
		return fmt.Errorf("call %s on peer %s: HTTP %s: %q; is an ecom-agent of this version listening there?",
			method, addr, hresp.Status, strings.TrimSpace(string(snippet)))
	}
	sealedResp, err := io.ReadAll(io.LimitReader(hresp.Body, c.s.maxBytes+1))
	if err != nil {
		return c.transportError(ctx, addr, method, err)
	}
	if int64(len(sealedResp)) > c.s.maxBytes {
		return fmt.Errorf("call %s on peer %s: the response exceeds the limit of %d bytes", method, addr, c.s.maxBytes)
	}
	renv, err := openEnvelope(box, sealedResp, kindResponse, method, env.ID)
	if err != nil {
		return fmt.Errorf("call %s on peer %s: cannot open the response: %w", method, addr, err)
	}
	if renv.Error != nil {
		return fmt.Errorf("peer %s (%s) answered %s: %w", addr, renv.FromName, method, renv.Error)
	}
	if to != "" && renv.From != to {
		return fmt.Errorf("call %s on peer %s: answered by node %s (%s), not %s", method, addr, renv.From, renv.FromName, to)
	}
	if resp != nil {
		if err := json.Unmarshal(orNull(renv.Body), resp); err != nil {
			return fmt.Errorf("call %s on peer %s (%s): decode response: %w", method, addr, renv.FromName, err)
		}
	}
	return nil
}

// rejection explains a 403. The body says nothing by design, but the
// peer's Date header carries its clock: if that is too far from ours, our
// timestamp is the likely reason.
func (c *Client) rejection(hresp *http.Response, box *Box) error {
	if d, err := http.ParseTime(hresp.Header.Get("Date")); err == nil {
		// Date has whole seconds; allow for that.
		if skew := d.Sub(c.s.now()); skew > ReplayWindow || skew < -ReplayWindow-time.Second {
			return &skewError{skew: skew}
		}
	}
	if box == c.s.cpBox {
		return controlPlaneRejection{}
	}
	return ErrUnauthorized
}

// transportError describes a call that got no answer.
func (c *Client) transportError(ctx context.Context, addr, method string, err error) error {
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err // its text repeats the URL
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("call %s on peer %s: no answer in time: %w", method, addr, err)
	}
	return fmt.Errorf("call %s on peer %s: %w", method, addr, err)
}
