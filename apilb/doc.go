// Package apilb is the node-local, client-side load balancer for the
// Kubernetes API.
//
// Every node's agent runs one on loopback (DefaultListen,
// 127.0.0.1:6444). The kubelet's and kube-proxy's kubeconfigs point at
// https://127.0.0.1:6444, and the balancer spreads their TCP
// connections over the kube-apiservers the agent learns from gossip
// (SetEndpoints). It is a plain TCP proxy: TLS passes through end to
// end, so the API servers still see the clients' own certificates
// (their serving certificate carries 127.0.0.1 among its SANs for this
// reason), and the balancer holds no credential but the one it probes
// with.
//
// # Why
//
// A node must reach the API through the loss of any API server, without
// an external load balancer or a virtual IP in front of the control
// plane. k3s solves the same problem the same way: its agent runs a
// load balancer on 127.0.0.1:6444 (pkg/agent/loadbalancer) fed with
// the server list it learns from the cluster. This package follows its
// design choices:
//
//   - Health is probed, not guessed: every endpoint gets an HTTPS
//     GET /readyz with Options.HealthTLS (the agent's client
//     certificate and the cluster CA) every Options.Interval; 200 means
//     healthy. /readyz, unlike a TCP dial, turns 500 as soon as an API
//     server starts its graceful shutdown or loses etcd, which is when
//     clients should move away. An endpoint is probed as soon as it is
//     added, not one interval later.
//   - New connections go round-robin over the healthy endpoints. A
//     failed dial marks the endpoint unhealthy at once and the next
//     endpoint is tried, each endpoint at most once per connection.
//   - Fail open: when no endpoint is known healthy (right after start,
//     before the first probe answered, or when every probe fails, for
//     instance because the probe's credentials are wrong) every endpoint
//     is tried anyway. Health only orders the candidates; it never
//     turns a working cluster away.
//   - When an endpoint turns unhealthy (probe or dial) or is removed,
//     the connections proxied to it are closed. Kubernetes clients hold
//     long-lived watches; without this they would keep hanging on a
//     dead or draining server instead of reconnecting, through the
//     balancer, to a healthy one.
//   - Each proxied connection copies in both directions. A clean EOF
//     from one side is passed on as a half-close (CloseWrite); an error
//     (a reset, a closed connection) closes both sides at once, so a
//     client whose API server died mid-stream sees its connection end
//     promptly and reconnects. After the server side ended, the client
//     gets Options.Timeout to finish before both sides are closed.
//   - Health transitions are logged once each, not on every probe.
//
// Run owns every goroutine: the accept loop, one probe loop per
// endpoint and two copy loops per connection. When its context ends (or
// Close is called) it closes the listener and every proxied connection
// and returns only after all of them have ended, leaving the port free.
//
// Collector exposes per-endpoint health and connection counts as
// Prometheus metrics; Status returns the same for status output.
package apilb
