//go:build tools

// Package tools pins the containerd 2.x programs the worker test hosts
// run (Debian 12's containerd 1.6 is older than kubelet 1.37 supports),
// and crictl, the CRI client at the Kubernetes minor the nodes run;
// build.sh builds them.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
