package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// serveSocket serves the control API on a unix socket readable by root
// only, until ctx ends. It removes a stale socket left by a killed agent.
func serveSocket(ctx context.Context, path string, h http.Handler) (<-chan error, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: remove stale %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = os.Remove(path)
	}()
	return done, nil
}

// socketHandler serves GET /v1/status and POST /v1/renew (a JSON list of
// certificate names, or ["all"]; it answers when the pass is over).
func socketHandler(get func() Status, renew func(names []string) RenewResult) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(get())
	})
	mux.HandleFunc("POST /v1/renew", func(w http.ResponseWriter, r *http.Request) {
		var names []string
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&names); err != nil || len(names) == 0 {
			http.Error(w, "want a JSON list of certificate names, or [\"all\"]", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(renew(names))
	})
	return mux
}

// RequestRenewal asks the daemon to renew certificates now and waits for
// the pass (it may wait for other nodes' renewals first).
func RequestRenewal(ctx context.Context, socketPath string, names []string) (RenewResult, error) {
	body, _ := json.Marshal(names)
	var res RenewResult
	err := socketCall(ctx, socketPath, http.MethodPost, "/v1/renew", body, renewLockTimeout+5*time.Minute, &res)
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
