package main

import (
	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

// etcdCommand is listed for help and completion; run hands `ecom-agent
// etcd ...` to runEtcd before cobra parses anything.
func etcdCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "etcd [etcd flags]",
		Short:              "Run the etcd server built into this binary (used by etcd.service)",
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
	}
}

// runEtcd runs etcd's own main with the given arguments. etcd exits the
// process itself when it stops.
func runEtcd(args []string) int {
	etcdmain.Main(append([]string{"etcd"}, args...))
	return exitOK
}
