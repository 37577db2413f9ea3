package status

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// RenewLockTimeout is how long a renewal pass waits for the cluster's
// renewal lock (held by another node's pass) before it gives up.
const RenewLockTimeout = 15 * time.Minute

// RequestRenewal asks the daemon to renew certificates now and waits for
// the pass (it may wait for other nodes' renewals first).
func RequestRenewal(ctx context.Context, socketPath string, names []string) (RenewResult, error) {
	body, _ := json.Marshal(names)
	var res RenewResult
	err := socketCall(ctx, socketPath, http.MethodPost, "/v1/renew", body, RenewLockTimeout+5*time.Minute, &res)
	return res, err
}

// QueryStatus asks the daemon listening on socketPath for its status.
func QueryStatus(ctx context.Context, socketPath string) (Status, error) {
	var s Status
	err := socketCall(ctx, socketPath, http.MethodGet, "/v1/status", nil, 10*time.Second, &s)
	return s, err
}

// socketCall makes one request to the daemon's control socket and decodes
// its JSON answer into out.
func socketCall(ctx context.Context, socketPath, method, path string, body []byte, timeout time.Duration, out any) error {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
	}}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("ask the daemon at %s: %w", socketPath, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("daemon answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("daemon's answer: %w", err)
	}
	return nil
}
