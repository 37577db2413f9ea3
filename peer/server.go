package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// Server timeouts. Handlers get Options.HandlerTimeout; writing the
// response may take writeSlack longer.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeSlack        = 15 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownGrace     = 5 * time.Second
	maxHeaderBytes    = 16 << 10
)

// forbiddenBody is the whole answer to a request that fails
// authentication: it says nothing about why. The server logs the reason.
const forbiddenBody = "forbidden\n"

// Server answers peer requests. Register handlers with Handle, then call
// Serve.
type Server struct {
	s      *settings
	replay *replayCache
	// started is when the server was made. Requests stamped before it
	// are refused: the replay cache lives in memory, so a request
	// captured before a restart could otherwise be replayed after it.
	started time.Time

	mu       sync.Mutex
	handlers map[string]HandlerFunc
	addr     net.Addr
	serving  bool
}

// NewServer returns a Server for the cluster and node in opts.
func NewServer(opts Options) (*Server, error) {
	s, err := opts.settings()
	if err != nil {
		return nil, err
	}
	// Truncated as the envelopes' timestamps are.
	started := s.now().Truncate(time.Millisecond)
	return &Server{s: s, replay: newReplayCache(s.replayCache), started: started, handlers: make(map[string]HandlerFunc)}, nil
}

// Handle registers fn as the handler of method. Method names are 1 to 64
// characters of a-z, 0-9, '.' and '-', starting with a letter. Handle
// panics if the name is invalid or already registered, as those are
// programming errors.
func (srv *Server) Handle(method string, fn HandlerFunc) {
	if !validMethod(method) {
		panic(fmt.Sprintf("peer: invalid method name %q", method))
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if _, dup := srv.handlers[method]; dup {
		panic(fmt.Sprintf("peer: method %q registered twice", method))
	}
	srv.handlers[method] = fn
}

// Listen opens a TCP listener on addr ("host:port"; port 0 picks one) for
// Serve, and makes Addr report it.
func (srv *Server) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for peer requests: %w", err)
	}
	srv.mu.Lock()
	srv.addr = ln.Addr()
	srv.mu.Unlock()
	return ln, nil
}

// Addr returns the address the server listens on, or nil before Listen or
// Serve.
func (srv *Server) Addr() net.Addr {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.addr
}

// Serve answers requests on ln until ctx ends, then stops: it closes ln,
// cancels the contexts of running handlers, waits up to a few seconds for
// them, and returns nil. It returns an error if ln fails first. Serve
// closes ln in either case and may be called once.
func (srv *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv.mu.Lock()
	if srv.serving {
		srv.mu.Unlock()
		ln.Close()
		return errors.New("peer: Serve called twice")
	}
	srv.serving = true
	srv.addr = ln.Addr()
	srv.mu.Unlock()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/peer/{method}", srv.serveHTTP)
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      srv.s.handlerTimeout + writeSlack,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(srv.s.log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(netutil.LimitListener(ln, MaxConns)) }()
	srv.s.log.Info("serving peer requests", "addr", ln.Addr().String())

	select {
	case err := <-done:
		return fmt.Errorf("serve peer requests on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		srv.s.log.Warn("peer handlers still running at shutdown; closing their connections", "err", err)
		hs.Close()
	}
	<-done
	srv.s.log.Info("stopped serving peer requests", "addr", ln.Addr().String())
	return nil
}

// serveHTTP authenticates a request, runs its handler and seals the
// answer. Every check up to the replay cache ends in a bare 403.
func (srv *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	now := srv.s.now()
	// Our clock, so that a rejected caller can tell its clock is off.
	w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
	method := r.PathValue("method")
	if !validMethod(method) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, srv.s.maxBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			srv.s.log.Warn("rejected peer request", "method", method, "remote", r.RemoteAddr,
				"reason", fmt.Sprintf("body over the limit of %d bytes", mbe.Limit))
			http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
		}
		return // otherwise the caller went away
	}

	box, err := srv.s.boxFor(method)
	if err != nil {
		srv.deny(w, r, method, fmt.Sprintf("a control-plane method, and %v", err))
		return
	}
	env, err := openEnvelope(box, body, kindRequest, method, "")
	if err != nil {
		what := "cluster secret"
		if box == srv.s.cpBox {
			what = "control-plane key (a worker, or a node with another key)"
		}
		srv.deny(w, r, method, "cannot decrypt: the sender's "+what+" or cluster name differ from ours, "+
			"or the request was altered or sent to another method")
		return
	}
	if env.Version != protocolVersion {
		srv.reply(w, env, nil, Errorf(CodeUnsupportedVersion,
			"%s speaks peer protocol version %d, not %d; upgrade the older agent", srv.s.nodeName, protocolVersion, env.Version))
		return
	}
	sent := time.UnixMilli(env.TimeMs)
	if skew := sent.Sub(now); skew > ReplayWindow || skew < -ReplayWindow {
		dir := "ahead"
		if skew < 0 {
			dir, skew = "behind", -skew
		}
		srv.deny(w, r, method, fmt.Sprintf("clock skew of %s with %s (%s), whose clock is %s; check NTP",
			skew.Round(time.Second), remoteHost(r.RemoteAddr), env.FromName, dir))
		return
	}
	if sent.Before(srv.started) {
		srv.deny(w, r, method, fmt.Sprintf("request from %s (%s) stamped %s, before this agent started (%s): a replay, or its clock is behind ours; check NTP",
			env.FromName, remoteHost(r.RemoteAddr), sent.UTC().Format(time.RFC3339Nano), srv.started.UTC().Format(time.RFC3339Nano)))
		return
	}
	id, err := parseRequestID(env.ID)
	if err != nil {
		srv.deny(w, r, method, fmt.Sprintf("malformed request from %s: %v", env.FromName, err))
		return
	}
	switch srv.replay.check(id, sent, now) {
	case replaySeen:
		srv.deny(w, r, method, fmt.Sprintf("replay of request %s from %s, first seen earlier", env.ID, env.FromName))
		return
	case replayFull:
		srv.s.log.Error("peer replay cache is full; refusing requests until entries expire",
			"method", method, "remote", r.RemoteAddr)
		srv.reply(w, env, nil, Errorf(CodeUnavailable, "%s is handling too many requests; try again later", srv.s.nodeName))
		return
	}
	if env.To != "" && env.To != srv.s.nodeID {
		srv.reply(w, env, nil, Errorf(CodeWrongNode, "request for node %s reached %s (node %s)", env.To, srv.s.nodeName, srv.s.nodeID))
		return
	}

	srv.mu.Lock()
	h := srv.handlers[method]
	srv.mu.Unlock()
	if h == nil {
		srv.reply(w, env, nil, Errorf(CodeUnknownMethod, "%s has no handler for %q; is its agent older?", srv.s.nodeName, method))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), srv.s.handlerTimeout)
	defer cancel()
	result, err := srv.run(ctx, h, Request{
		Method:     method,
		NodeID:     env.From,
		NodeName:   env.FromName,
		RemoteAddr: r.RemoteAddr,
		Sent:       sent,
		body:       env.Body,
	})
	srv.reply(w, env, result, err)
}

// run calls a handler, turning a panic into CodeInternal.
func (srv *Server) run(ctx context.Context, h HandlerFunc, req Request) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			srv.s.log.Error("peer handler panicked", "method", req.Method, "panic", p, "stack", string(debug.Stack()))
			result, err = nil, Errorf(CodeInternal, "handler for %s panicked", req.Method)
		}
	}()
	return h(ctx, req)
}

// deny answers a request that failed authentication, and logs why.
func (srv *Server) deny(w http.ResponseWriter, r *http.Request, method, reason string) {
	srv.s.log.Warn("rejected peer request", "method", method, "remote", r.RemoteAddr, "reason", reason)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	io.WriteString(w, forbiddenBody)
}

// reply seals the answer to an authenticated request: the handler's
// result, or its error as a RemoteError.
func (srv *Server) reply(w http.ResponseWriter, req *envelope, result any, herr error) {
	resp := envelope{
		Version:  protocolVersion,
		Kind:     kindResponse,
		Method:   req.Method,
		ID:       req.ID,
		From:     srv.s.nodeID,
		FromName: srv.s.nodeName,
		TimeMs:   srv.s.now().UnixMilli(),
	}
	if herr == nil && result != nil {
		body, err := json.Marshal(result)
		if err != nil {
			herr = fmt.Errorf("encode %s response: %w", req.Method, err)
		}
		resp.Body = body
	}
	if herr != nil {
		resp.Body = nil
		resp.Error = srv.remoteError(req, herr)
	}
	box, err := srv.s.boxFor(req.Method) // opened with it, so there is one
	if err != nil {
		srv.s.log.Error("cannot seal peer response", "method", req.Method, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	sealed, err := resp.seal(box)
	if err == nil && int64(len(sealed)) > srv.s.maxBytes {
		resp.Body, resp.Error = nil, Errorf(CodeInternal, "the %s response of %d bytes exceeds the limit of %d", req.Method, len(sealed), srv.s.maxBytes)
		sealed, err = resp.seal(box)
	}
	if err != nil {
		srv.s.log.Error("cannot seal peer response", "method", req.Method, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(sealed)
}

// remoteError converts a handler error for the caller. Errors that are not
// RemoteErrors are unexpected, so the server logs them too.
func (srv *Server) remoteError(req *envelope, err error) *RemoteError {
	if re := (*RemoteError)(nil); errors.As(err, &re) {
		return re
	}
	srv.s.log.Warn("peer handler failed", "method", req.Method, "from", req.FromName, "err", err)
	return &RemoteError{Code: CodeInternal, Message: err.Error()}
}

// remoteHost returns the host of a host:port address.
func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
