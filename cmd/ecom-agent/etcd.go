package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/buildinfo"
	"github.com/ecom-platform/ecom-agent/clusterkeys"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/snapshot"
)

// etcdCommand is listed for help and completion; run hands `ecom-agent
// etcd ...` to runEtcd before cobra parses anything, except `etcd
// snapshot ...`, the agent's own.
func (c *cli) etcdCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "etcd [etcd flags]",
		Short: "Run the etcd server built into this binary (used by etcd.service); etcd snapshot, recover, restore",
		Long: `etcd with etcd's own flags runs the etcd server built into this binary, as
etcd.service does.

etcd snapshot saves, lists and prunes snapshots of this control-plane node's
etcd member, each verified as etcdutl reads it and kept with its metadata
(FILE.json: cluster, revision, hash, size, SHA-256, node, versions, time).
The daemon takes them itself every etcd.snapshots.interval.

etcd recover restarts this node's etcd as a one-member cluster from its own
data when the cluster lost its quorum; etcd restore rebuilds it from a
snapshot.`,
		Args: cobra.ArbitraryArgs,
	}
	cmd.AddCommand(c.snapshotCommand(), c.etcdRecoverCommand(), c.etcdRestoreCommand())
	return cmd
}

// runEtcd runs etcd's own main with the given arguments. etcd exits the
// process itself when it stops.
func runEtcd(args []string) int {
	etcdmain.Main(append([]string{"etcd"}, args...))
	return exitOK
}

func (c *cli) snapshotCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, list and prune etcd snapshots",
	}
	cmd.AddCommand(c.snapshotSaveCommand(), c.snapshotListCommand(), c.snapshotPruneCommand())
	return cmd
}

func (c *cli) snapshotSaveCommand() *cobra.Command {
	var rootDir, output string
	cmd := &cobra.Command{
		Use:   "save [FILE]",
		Short: "Save a verified snapshot of this node's etcd member (default: in etcd.snapshots.dir)",
		Long: `save streams a snapshot from this control-plane node's etcd member into FILE
(default: etcd.snapshots.dir/etcd-snapshot-NODE-TIME.db, mode 0600),
checks it (etcd's SHA-256, then its hash, revision and keys, as etcdutl
snapshot status reads them) and writes its metadata to FILE.json. Nothing is
left at FILE unless all of that succeeded. Snapshots saved by hand are never
pruned.`,
		Example: "  ecom-agent etcd snapshot save\n  ecom-agent etcd snapshot save /var/backups/before-upgrade.db",
		Args:    usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, root, err := c.nodeSetup(rootDir)
			if err != nil {
				return err
			}
			if !cfg.IsControlPlane() {
				return withCode(exitFailure, errors.New("a worker runs no etcd member: save snapshots on a control-plane node"))
			}
			now := time.Now()
			path := root.Path(filepath.Join(cfg.Etcd.Snapshots.Dir, snapshot.Name(cfg.NodeName, now)))
			if len(args) == 1 {
				if path, err = filepath.Abs(args[0]); err != nil {
					return usageError{err}
				}
				if _, err := os.Stat(path); err == nil {
					return withCode(exitFailure, fmt.Errorf("%s exists; nothing was written: name another file", path))
				}
			}
			cli, err := etcdclient.Local(root, cfg)
			if err != nil {
				return withCode(exitFailure, fmt.Errorf("connect to this node's etcd member: %w", err))
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
			defer cancel()
			endpoint := bootstrap.EtcdClientURL(netip.MustParseAddr("127.0.0.1"), cfg.Etcd.ClientPort)
			sealed, err := clusterkeys.Sealed(root, cfg)
			if err != nil {
				return withCode(exitFailure, fmt.Errorf("the cluster's keys a snapshot carries: %w", err))
			}
			m, err := snapshot.Save(ctx, cli, endpoint, path, snapshot.Info{
				Cluster: cfg.ClusterName, Carry: map[string][]byte{clusterkeys.EtcdKey: sealed},
				Node: cfg.NodeName, KubernetesVersion: cfg.KubernetesVersion, AgentVersion: buildinfo.Version, Now: now,
			})
			if err != nil {
				return withCode(exitFailure, err)
			}
			if output != outTable {
				return writeDocument(c.stdout, snapshotJSON{Path: path, Meta: m}, output)
			}
			fmt.Fprintf(c.stdout, "saved %s: revision %d, %d keys, %s, cluster %s, hash %08x\n", path, m.Revision, m.TotalKeys, bytesIEC(m.Size), m.ClusterID, m.Hash)
			return nil
		},
	}
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the node's files are under")
	addOutputFlag(cmd, &output)
	return cmd
}

// snapshotJSON is a snapshot as save and list print it.
type snapshotJSON struct {
	Path string `json:"path"`
	snapshot.Meta
	Problem string `json:"problem,omitempty"`
}

func (c *cli) snapshotListCommand() *cobra.Command {
	var rootDir, output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the snapshots in etcd.snapshots.dir, newest first",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, root, err := c.nodeSetup(rootDir)
			if err != nil {
				return err
			}
			es, err := snapshot.List(root.Path(cfg.Etcd.Snapshots.Dir))
			if err != nil {
				return withCode(exitFailure, err)
			}
			if output != outTable {
				out := make([]snapshotJSON, 0, len(es))
				for _, e := range es {
					out = append(out, snapshotJSON{Path: e.Path, Meta: e.Meta, Problem: e.Problem})
				}
				return writeDocument(c.stdout, out, output)
			}
			if len(es) == 0 {
				fmt.Fprintf(c.stdout, "no snapshots in %s\n", cfg.Etcd.Snapshots.Dir)
				return nil
			}
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTAKEN\tSIZE\tREVISION\tCLUSTER\tNODE\tKIND")
			for _, e := range es {
				kind := "by hand"
				if e.Meta.Scheduled {
					kind = "scheduled"
				}
				if e.Problem != "" {
					kind = e.Problem
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.Meta.Name, e.Meta.Taken.Format(time.RFC3339), bytesIEC(e.Meta.Size),
					e.Meta.Revision, orDash(e.Meta.ClusterID), orDash(e.Meta.Node), kind)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the node's files are under")
	addOutputFlag(cmd, &output)
	return cmd
}

func (c *cli) snapshotPruneCommand() *cobra.Command {
	var rootDir string
	var keep int
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove this node's scheduled snapshots beyond the newest etcd.snapshots.retention (or --keep)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, root, err := c.nodeSetup(rootDir)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("keep") {
				keep = cfg.Etcd.Snapshots.Retention
			}
			if keep < 1 {
				return usageError{fmt.Errorf("--keep %d: keep at least 1", keep)}
			}
			removed, err := snapshot.Prune(root.Path(cfg.Etcd.Snapshots.Dir), cfg.NodeName, keep)
			for _, r := range removed {
				fmt.Fprintf(c.stdout, "removed %s\n", r.Path)
			}
			if err != nil {
				return withCode(exitFailure, err)
			}
			if len(removed) == 0 {
				fmt.Fprintf(c.stdout, "nothing to prune: at most %d scheduled snapshot(s) in %s\n", keep, cfg.Etcd.Snapshots.Dir)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&keep, "keep", 0, "scheduled snapshots to keep (default etcd.snapshots.retention)")
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the node's files are under")
	return cmd
}

// bytesIEC prints a size in KiB, MiB or GiB.
func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 2; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMG"[exp])
}
