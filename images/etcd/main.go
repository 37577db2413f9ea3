// Command etcd is etcd's own server main, from the etcd module the agent
// pins: the conformance suite's aggregator test runs it beside the sample
// API server, as /usr/local/bin/etcd in its etcd image (images/conformance).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
