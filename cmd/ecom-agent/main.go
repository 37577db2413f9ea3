// Command ecom-agent bootstraps and runs a bare-metal Kubernetes node.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
