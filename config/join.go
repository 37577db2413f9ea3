package config

import (
	"net"
	"net/netip"
	"strconv"

	"github.com/ecom-platform/ecom-agent/token"
)

// Join is how workers join: a control-plane agent serves the join endpoint
// (HTTPS, its certificate from the cluster CA) where a worker presents a
// join token the first time and its kubelet certificate afterwards, and
// gets its kubelet and kube-proxy certificates and the gossip key.
type Join struct {
	// Port is the join endpoint's TCP port on control-plane nodes, and
	// the port of Servers that name none (default 7949).
	Port int `toml:"port"`
	// Token is a worker's join token (`ecom-agent token create` prints
	// one); exactly one of it and TokenFile is set on a worker, neither
	// on a control-plane node. After loading it holds the token either
	// way; it prints as "[redacted]".
	Token     Secret `toml:"token"`
	TokenFile string `toml:"token_file"`
	// Servers lists control-plane nodes ("host" or "host:port") a worker
	// asks first; once it gossips, it asks every control-plane node it
	// sees. Required on a worker.
	Servers []string `toml:"servers"`
}

const defaultJoinPort = 7949

var joinTokenKeys = secretKeys{
	inline: "join.token", file: "join.token_file", what: "the join token", example: "/etc/ecom-agent/join-token",
	required: `required on a worker: make a token on a control-plane node with: ecom-agent token create > /etc/ecom-agent/join-token, ` +
		`copy that file here (chmod 600) and set token_file = "/etc/ecom-agent/join-token" under [join]`,
	check: func(v string) string {
		if _, err := token.Parse(v); err != nil {
			return "is " + err.Error()
		}
		return ""
	},
}

// resolveJoin checks the [join] table against the node's role: a worker
// holds a join token and names servers, and no cluster secret; a
// control-plane node holds neither a token nor servers. It runs after
// resolveSecret has read the secrets.
func (l *loader) resolveJoin(c *Config) {
	if c.Role != RoleWorker {
		for _, k := range []string{"join.token", "join.token_file", "join.servers"} {
			if l.defined[k] {
				l.add(k, "only a worker joins with a token; remove %s from this control-plane node's config", k)
			}
		}
		return
	}
	l.resolveOne(joinTokenKeys, &c.Join.Token, c.Join.TokenFile, true)
	if len(c.Join.Servers) == 0 {
		l.add("join.servers", `required on a worker: the control-plane nodes it asks to join, e.g. servers = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]`)
	}
	for _, s := range c.Join.Servers {
		if msg := joinProblem(s); msg != "" {
			l.addAgain("join.servers", "%q %s", s, msg)
		}
	}
	// A worker gossips with the servers unless told otherwise.
	if !l.defined["gossip.join"] {
		for _, s := range c.Join.Servers {
			c.Gossip.Join = append(c.Gossip.Join, serverHost(s))
		}
	}
}

// serverHost is the host part of a join server address, in the form
// gossip.join takes ("host", IPv6 in brackets).
func serverHost(s string) string {
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	} else if len(s) > 1 && s[0] == '[' {
		s = s[1 : len(s)-1]
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
		return "[" + s + "]"
	}
	return s
}

// JoinServerAddrs are the worker's join servers as "host:port", with
// join.port where a server names no port.
func (c *Config) JoinServerAddrs() []string {
	out := make([]string, 0, len(c.Join.Servers))
	for _, s := range c.Join.Servers {
		if _, _, err := net.SplitHostPort(s); err == nil {
			out = append(out, s)
			continue
		}
		h := serverHost(s)
		if len(h) > 1 && h[0] == '[' {
			h = h[1 : len(h)-1]
		}
		out = append(out, net.JoinHostPort(h, strconv.Itoa(c.Join.Port)))
	}
	return out
}
