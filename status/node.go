package status

import "github.com/ecom-platform/ecom-agent/apilb"

// NodeStatus is this node's kubelet side as the status shows it: the
// container runtime, the images imported, the Node's readiness and the
// pod network.
type NodeStatus struct {
	// Runtime is what the container runtime says of itself over CRI.
	Runtime string `json:"runtime,omitempty"`
	// Images are the image archives imported into containerd's k8s.io
	// namespace before the kubelet started.
	Images []string `json:"images,omitempty"`
	// ImageErrors are the archives that did not import, each with why:
	// the kubelet starts anyway, and the pods that need those images
	// wait for them.
	ImageErrors []string `json:"image_errors,omitempty"`
	// KubeletStarted is true once the kubelet's unit was started.
	KubeletStarted bool `json:"kubelet_started"`
	// Ready is the Node's Ready condition; Reason says why not.
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	// PodCIDR is the Node's pod range, once the controller manager gave
	// it one; the pod network's config is written then.
	PodCIDR string `json:"pod_cidr,omitempty"`
	// Routes are the other nodes' pod ranges routed through them.
	Routes []string `json:"routes,omitempty"`
	// Backend is how pod traffic reaches them: host-gw or vxlan.
	Backend string `json:"backend,omitempty"`
	// Preflight lists what keeps the kubelet from starting, each with
	// its fix.
	Preflight []string `json:"preflight,omitempty"`
	// Error is the last step that failed; the agent retries.
	Error string `json:"error,omitempty"`
	// APILoadBalancer is a worker's load balancer on 127.0.0.1:6444:
	// the API servers it spreads to and their health.
	APILoadBalancer []apilb.EndpointStatus `json:"api_load_balancer,omitempty"`
}
