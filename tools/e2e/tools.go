//go:build tools

// Package tools pins what build.sh builds: the e2e suite, its ginkgo
// runner and the programs of the images the conformance tests run.
package tools

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/test/e2e"
	_ "k8s.io/kubernetes/test/images/agnhost"
	_ "k8s.io/sample-apiserver"
)
