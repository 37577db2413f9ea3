package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/recovery"
)

func (c *cli) etcdRecoverCommand() *cobra.Command {
	var yes bool
	var rootDir, output string
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Restart this node's etcd as a one-member cluster from its data when the quorum is lost",
		Long: `recover is for a cluster that lost its etcd quorum (two of three
control-plane nodes gone). On the surviving node it checks that no quorum
answers (and refuses, naming the members that answer, when one does), stops
ecom-agent and etcd, copies /var/lib/etcd to /var/lib/etcd.recover-TIME,
runs etcd once with --force-new-cluster so that it keeps its data and
drops the other members, records the one-member cluster and starts the
agent again. Every object written before the loss is kept.

The other control-plane nodes come back as new members when their agents
run again: the cluster no longer lists them, so they set their old data
aside (never deleting it) and join as learners, which the reconciler
promotes to voters.

Exit codes: 0 recovered; 6 refused, a quorum answers (nothing changed); 64
no --yes without a terminal; 78 invalid config; 1 anything else.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, root, err := c.nodeSetup(rootDir)
			if err != nil {
				return err
			}
			if !yes {
				if err := c.confirm(fmt.Sprintf("Recover etcd on %s as a one-member cluster from its own data?", cfg.NodeName),
					"recover rewrites this node's etcd membership to itself alone: pass --yes to confirm",
					"recover cancelled; nothing was changed"); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			m, err := connectSystemd(ctx, root)
			if err != nil {
				return err
			}
			defer m.Close()
			rep, err := recovery.Recover(ctx, recovery.Options{
				Config: cfg, Root: root, Systemd: m,
				Progress: func(s string) { fmt.Fprintln(c.stderr, s+"...") },
			})
			var quorum *recovery.QuorumError
			if errors.As(err, &quorum) {
				return withCode(exitUnsafe, err)
			}
			if err != nil {
				return withCode(exitFailure, err)
			}
			if output != outTable {
				return writeDocument(c.stdout, rep, output)
			}
			fmt.Fprintf(c.stdout, "recovered: %s is etcd cluster %s alone (member %s), at revision %d\n", rep.Node, rep.ClusterID, rep.MemberID, rep.Revision)
			fmt.Fprintf(c.stdout, "removed from the member list: %s; they join again as new members when their agents run\n", orDash(strings.Join(rep.Removed, ", ")))
			fmt.Fprintf(c.stdout, "the data before: %s\n", rep.Backup)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the files live under (for tests and rescue systems)")
	_ = cmd.Flags().MarkHidden("root")
	addOutputFlag(cmd, &output)
	return cmd
}
