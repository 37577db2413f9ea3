package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/etcdutl/v3/etcdutl"
)

// etcdutlCommand is listed for help, completion and its man page; run
// hands `ecom-agent etcdutl ...` to runEtcdutl before cobra parses
// anything, so etcdutl's own flags and help apply.
func etcdutlCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "etcdutl [etcdutl flags] COMMAND",
		Short: "Run etcdutl (built in): etcd's offline tool for snapshots and data files",
		Long: `etcdutl is etcd's own administrative tool for files, built into
ecom-agent from the etcd module the agent uses, so its version always
matches the etcd the node runs. It works on files, not on a running
member (that is etcdctl): a snapshot's hash, revision and size, restoring
a snapshot into a new data directory, an offline defragmentation of a
stopped member's data (/var/lib/etcd/member/snap/db).

  ecom-agent etcdctl snapshot save /var/backups/etcd.db
  ecom-agent etcdutl snapshot status /var/backups/etcd.db -w table
  ecom-agent etcdutl version`,
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			os.Exit(runEtcdutl(args))
			return nil
		},
	}
}

// runEtcdutl runs etcdutl's commands, as its own main assembles them
// (go.etcd.io/etcd/etcdutl/v3's main package cannot be imported), on args.
func runEtcdutl(args []string) int {
	root := &cobra.Command{
		Use:           "etcdutl",
		Short:         "An administrative command line tool for etcd3.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().DurationVar(&etcdutl.FlockTimeout, "timeout", 10*time.Second, "time to wait to obtain a file lock on db file, 0 to block indefinitely")
	root.PersistentFlags().StringVarP(&etcdutl.OutputFormat, "write-out", "w", "simple", "set the output format (fields, json, protobuf, simple, table)")
	root.AddCommand(
		etcdutl.NewDefragCommand(),
		etcdutl.NewSnapshotCommand(),
		etcdutl.NewHashKVCommand(),
		etcdutl.NewVersionCommand(),
		etcdutl.NewMigrateCommand(),
	)
	root.SetHelpTemplate(`{{.UsageString}}`)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return exitFailure
	}
	return exitOK
}
