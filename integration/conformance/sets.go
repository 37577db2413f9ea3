package conformance

import (
	"regexp"
	"strings"
	"time"
)

// The whole conformance set, in two passes as upstream's conformance image
// runs it: what may run in parallel, then the [Serial] specs one by one.
var (
	Parallel = Pass{Name: "parallel", Focus: `\[Conformance\]`, Skip: `\[Serial\]|\[Disruptive\]`, Procs: 4, Timeout: 150 * time.Minute}
	Serial   = Pass{Name: "serial", Focus: `\[Serial\].*\[Conformance\]|\[Conformance\].*\[Serial\]`, Skip: `\[Disruptive\]`, Procs: 1, Timeout: 90 * time.Minute}
)

// SubsetSpecs are the specs `make test` runs (TestPackagePath), a
// few of each part the cluster must get right, chosen to finish within
// minutes: none of them waits out a fixed period (the "*not* be
// restarted" probes wait four minutes each).
var SubsetSpecs = []string{
	// Pod network: pod to pod and node to pod, Services, DNS, the API
	// server's proxy.
	"[sig-network] Networking Granular Checks: Pods should function for intra-pod communication: http [Conformance]",
	"[sig-network] Networking Granular Checks: Pods should function for node-pod communication: udp [LinuxOnly] [Conformance]",
	"[sig-network] Services should serve a basic endpoint from pods [Conformance]",
	"[sig-network] Services should be able to create a functioning NodePort service [Conformance]",
	"[sig-network] DNS should provide DNS for services [Conformance]",
	"[sig-network] DNS should provide DNS for the cluster [Conformance]",
	"[sig-network] Proxy version v1 A set of valid responses are returned for both pod and service ProxyWithPath [Conformance]",
	// Pods and probes.
	"[sig-node] Pods should be submitted and removed [Conformance]",
	"[sig-node] Probing container should be restarted with a /healthz http liveness probe [Conformance]",
	// Volumes.
	"[sig-storage] ConfigMap should be consumable from pods in volume [Conformance]",
	"[sig-storage] Secrets should be consumable from pods in volume [Conformance]",
	"[sig-storage] Projected combined should project all components that make up the projection API [Projection] [Conformance]",
	// Workloads.
	"[sig-apps] Deployment RollingUpdateDeployment should delete old pods and create new ones [Conformance]",
	"[sig-apps] Job should run a job to completion when tasks sometimes fail and are locally restarted [Conformance]",
	// Authorization and service accounts.
	"[sig-auth] ServiceAccounts should mount an API token into pods [Conformance]",
	"[sig-auth] SubjectReview should support SubjectReview API operations [Conformance]",
	// NetworkPolicy (not part of conformance; the agent enforces it).
	"[sig-network] Netpol NetworkPolicy between server and client should support a 'default-deny-ingress' policy [Feature:NetworkPolicy]",
	"[sig-network] Netpol NetworkPolicy between server and client should enforce policy based on Ports [Feature:NetworkPolicy]",
	"[sig-network] Netpol NetworkPolicy between server and client should allow egress access on one named port [Feature:NetworkPolicy]",
	"[sig-network] Netpol NetworkPolicy between server and client should enforce policy based on NamespaceSelector with MatchExpressions [Feature:NetworkPolicy]",
}

// Subset is the pass of SubsetSpecs.
var Subset = Pass{Name: "subset", Focus: focusOn(SubsetSpecs), Procs: 3, Timeout: 20 * time.Minute}

// focusOn is a ginkgo focus matching the named specs: each name (a prefix
// of the full name --list-tests prints) quoted, anywhere in the text.
func focusOn(specs []string) string {
	q := make([]string, len(specs))
	for i, s := range specs {
		q[i] = regexp.QuoteMeta(s)
	}
	return strings.Join(q, "|")
}
