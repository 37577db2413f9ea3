package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/recovery"
)

func (c *cli) etcdRestoreCommand() *cobra.Command {
	var yes, force bool
	var rootDir, output string
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Rebuild etcd on this node as a one-member cluster from a snapshot",
		Long: `restore rebuilds the cluster's etcd from a snapshot, on one control-plane
node: a fresh one (a new host, or one after ecom-agent reset) or a member of
a cluster that lost its quorum. It refuses, changing nothing, when FILE does
not verify (etcd's SHA-256 and etcdutl's status), when the cluster keys FILE
carries do not open with this node's config (another cluster) unless
--force, and while a quorum of this node's etcd cluster answers (naming the
members that do).

Otherwise it installs the snapshot's cluster keys (CAs, service-account key,
encryption key: snapshots carry them, sealed with the control-plane key),
stops ecom-agent and etcd, restores FILE with a new cluster ID, revisions
bumped by a billion and marked compacted (so watchers relist), moves
/var/lib/etcd to /var/lib/etcd.restore-TIME, puts the restored data in its
place and starts the agent.

The other control-plane nodes join the restored cluster as new members:
run ecom-agent join on fresh ones, and ecom-agent reset then ecom-agent join
on ones that held the old cluster's data.

Exit codes: 0 restored; 6 refused (the snapshot does not verify or is
another cluster's, or a quorum answers; nothing changed); 64 no --yes
without a terminal; 78 invalid config; 1 anything else.`,
		Example: "  ecom-agent etcd restore /var/lib/ecom-agent/snapshots/etcd-snapshot-cp-1-20261206T120000Z.db --yes",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, root, err := c.nodeSetup(rootDir)
			if err != nil {
				return err
			}
			path, err := filepath.Abs(args[0])
			if err != nil {
				return usageError{err}
			}
			if !yes {
				if err := c.confirm(fmt.Sprintf("Restore etcd on %s from %s, as a new one-member cluster?", cfg.NodeName, path),
					"restore replaces this node's etcd data (moved aside, not deleted): pass --yes to confirm",
					"restore cancelled; nothing was changed"); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			m, err := connectSystemd(ctx, root)
			if err != nil {
				return err
			}
			defer m.Close()
			rep, err := recovery.Restore(ctx, recovery.RestoreOptions{
				Options: recovery.Options{
					Config: cfg, Root: root, Systemd: m,
					Progress: func(s string) { fmt.Fprintln(c.stderr, s+"...") },
				},
				Snapshot: path, Force: force,
			})
			var quorum *recovery.QuorumError
			var refused *recovery.RefusedError
			if errors.As(err, &quorum) || errors.As(err, &refused) {
				return withCode(exitUnsafe, err)
			}
			if err != nil {
				return withCode(exitFailure, err)
			}
			if output != outTable {
				return writeDocument(c.stdout, rep, output)
			}
			fmt.Fprintf(c.stdout, "restored: %s is etcd cluster %s alone (member %s), from %s at revision %d (cluster keys from the %s)\n",
				rep.Node, rep.ClusterID, rep.MemberID, rep.Snapshot, rep.Revision, rep.Keys)
			fmt.Fprintf(c.stdout, "the data before: %s\n", orDash(rep.Backup))
			fmt.Fprintln(c.stdout, "next: `ecom-agent join` on the other control-plane nodes (after `ecom-agent reset` on those that held the old data)")
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&force, "force", false, "restore a snapshot without this cluster's keys, keeping this node's own keys")
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the files live under (for tests and rescue systems)")
	_ = cmd.Flags().MarkHidden("root")
	addOutputFlag(cmd, &output)
	return cmd
}
