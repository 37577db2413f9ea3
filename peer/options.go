package peer

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults of Options.
const (
	// DefaultMaxMessageBytes bounds a sealed request or response. It is
	// read before the request is authenticated, so it is small: the
	// largest message, a commit with the cluster's keys, is a few KiB
	// (tens with RSA keys).
	DefaultMaxMessageBytes = 256 << 10
	// MaxConns bounds the connections a server serves at once; more wait
	// in the listen backlog. Unauthenticated peers cannot hold more than
	// MaxConns times DefaultMaxMessageBytes of the agent's memory.
	MaxConns = 64
	// DefaultCallTimeout bounds a Call whose context has no earlier deadline.
	DefaultCallTimeout = 15 * time.Second
	// DefaultHandlerTimeout bounds a handler's run.
	DefaultHandlerTimeout = 30 * time.Second
)

// minSecretLen is the shortest secret accepted, in bytes. The agent's
// configuration asks for 32 characters; this guards against an unset one.
const minSecretLen = 16

// Options configure a Server or a Client. The agent fills one from its
// configuration and state and passes it to both. Only keys derived from
// Secret are kept; Options should not be logged.
type Options struct {
	// Secret is the cluster secret.
	Secret []byte
	// ControlPlaneSecret is the control-plane key, held by control-plane
	// nodes only; nil on a worker. Requests and responses of
	// ControlPlaneMethods are sealed with a key derived from it, so only
	// holders of the key can call them, answer them or read either.
	ControlPlaneSecret []byte
	// ControlPlaneMethods are the methods sealed with the control-plane
	// key instead of the cluster secret. Client and server must agree.
	ControlPlaneMethods []string
	// ClusterName is the cluster's name. It is part of the key, so
	// clusters that share a secret but not a name cannot talk.
	ClusterName string
	// NodeID is this node's persisted ID, sent with every message and
	// checked by CallNode. Required.
	NodeID string
	// NodeName is this node's name, for messages; NodeID if empty.
	NodeName string
	// Log receives the server's reasons for rejecting requests. Nil
	// discards them.
	Log *slog.Logger
	// Now is the clock; time.Now if nil. Tests set it to skew a node.
	Now func() time.Time
	// MaxMessageBytes bounds sealed requests and responses, both when
	// sending and receiving; DefaultMaxMessageBytes if zero.
	MaxMessageBytes int64
	// CallTimeout bounds each Call; DefaultCallTimeout if zero.
	CallTimeout time.Duration
	// HandlerTimeout bounds each handler's context; DefaultHandlerTimeout
	// if zero. The server's write timeout is a little longer.
	HandlerTimeout time.Duration
	// ReplayCacheSize caps the request IDs a server remembers; 65536 if
	// zero. When it is full the server answers CodeUnavailable.
	ReplayCacheSize int
}

// settings are Options checked, with defaults filled in and the key
// derived.
type settings struct {
	box            *Box
	cpBox          *Box // nil without a control-plane key
	cpMethods      map[string]bool
	nodeID         string
	nodeName       string
	log            *slog.Logger
	now            func() time.Time
	maxBytes       int64
	callTimeout    time.Duration
	handlerTimeout time.Duration
	replayCache    int
}

func (o *Options) settings() (*settings, error) {
	var errs []error
	if len(o.Secret) < minSecretLen {
		errs = append(errs, fmt.Errorf("the cluster secret is %d bytes long; it must be at least %d", len(o.Secret), minSecretLen))
	}
	if o.ClusterName == "" {
		errs = append(errs, errors.New("the cluster name is empty"))
	}
	if o.NodeID == "" {
		errs = append(errs, errors.New("the node ID is empty"))
	}
	if o.ControlPlaneSecret != nil && len(o.ControlPlaneSecret) < minSecretLen {
		errs = append(errs, fmt.Errorf("the control-plane key is %d bytes long; it must be at least %d", len(o.ControlPlaneSecret), minSecretLen))
	}
	for _, m := range o.ControlPlaneMethods {
		if !validMethod(m) {
			errs = append(errs, fmt.Errorf("invalid control-plane method name %q", m))
		}
	}
	if o.MaxMessageBytes < 0 || o.CallTimeout < 0 || o.HandlerTimeout < 0 || o.ReplayCacheSize < 0 {
		errs = append(errs, errors.New("limits and timeouts must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("peer options: %w", err)
	}
	s := &settings{
		box:            NewBox(DeriveKey(o.Secret, PurposePeerRPC, o.ClusterName)),
		nodeID:         o.NodeID,
		nodeName:       cmp.Or(o.NodeName, o.NodeID),
		log:            o.Log,
		now:            o.Now,
		maxBytes:       cmp.Or(o.MaxMessageBytes, DefaultMaxMessageBytes),
		callTimeout:    cmp.Or(o.CallTimeout, DefaultCallTimeout),
		handlerTimeout: cmp.Or(o.HandlerTimeout, DefaultHandlerTimeout),
		replayCache:    cmp.Or(o.ReplayCacheSize, 1<<16),
	}
	s.cpMethods = make(map[string]bool, len(o.ControlPlaneMethods))
	for _, m := range o.ControlPlaneMethods {
		s.cpMethods[m] = true
	}
	if o.ControlPlaneSecret != nil {
		s.cpBox = NewBox(DeriveKey(o.ControlPlaneSecret, PurposeControlPlaneRPC, o.ClusterName))
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// errNoControlPlaneKey is why a node without the control-plane key
// cannot seal or open a control-plane method's messages.
var errNoControlPlaneKey = errors.New("this node holds no control-plane key (workers never do)")

// boxFor returns the box that seals method's requests and responses: the
// control-plane key's for ControlPlaneMethods, the cluster secret's for
// the others.
func (s *settings) boxFor(method string) (*Box, error) {
	if !s.cpMethods[method] {
		return s.box, nil
	}
	if s.cpBox == nil {
		return nil, errNoControlPlaneKey
	}
	return s.cpBox, nil
}
