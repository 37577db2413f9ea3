package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/reset"
	"github.com/ecom-platform/ecom-agent/units"
)

func (c *cli) resetCommand() *cobra.Command {
	var force, dryRun, yes bool
	var rootDir string
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Take this node out of its cluster and delete what the agent generated",
		Long: `reset takes this node out of its cluster so that a later 'ecom-agent join'
starts as on a new host. In order, it:

  1. checks that the etcd cluster keeps a quorum of answering voters
     without this node's member, and refuses otherwise (exit 6, nothing
     changed): bring the other members back first, or use --force;
  2. stops ecom-agent.service, which leaves gossip so peers list the node
     as left, not failed;
  3. hands etcd leadership to another voter if this member leads, and
     removes the member (the others add a standby in its place if there
     is one);
  4. stops, disables and deletes the etcd, control-plane, kube-proxy and
     kubelet units, removes kube-proxy's rules (kube-proxy --cleanup) and
     disables ecom-agent.service;
  5. deletes the PKI, kubeconfigs, component configs, etcd data and the
     agent's state (node ID, CA pin, sealed cluster keys).

It keeps /etc/ecom-agent (config.toml and manifests.d), image tarballs in
/var/lib/ecom-agent/images, logs, and etcd data set aside earlier. A forced
reset of a member it could not remove renames /var/lib/etcd and
/etc/kubernetes to NAME.reset-TIME instead of deleting them: they may hold
the cluster's only copy.

Exit codes: 0 reset; 6 refused as unsafe (nothing changed); 64 no --yes
without a terminal to confirm on; 78 invalid config (nothing changed); 1
anything else.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.loadConfig()
			if err != nil {
				return err
			}
			if !dryRun && !yes {
				if err := c.confirm(fmt.Sprintf("Reset %s: remove its etcd member, stop its units and delete what the agent generated?", cfg.NodeName),
					"reset deletes this node's certificates, etcd data and state: pass --yes to confirm (or --dry-run to see what it would do)",
					"reset cancelled; nothing was changed"); err != nil {
					return err
				}
			}
			root, err := hostfs.New(rootDir)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			m, err := connectSystemd(ctx, root)
			if err != nil {
				return err
			}
			defer m.Close()
			rep, err := reset.Reset(ctx, reset.Options{
				Root: root, Config: cfg, Systemd: m, Runner: units.ExecRunner{},
				Force: force, DryRun: dryRun,
				Progress: func(s string) { fmt.Fprintln(c.stderr, s+"...") },
			})
			printReset(c.stdout, rep, err == nil)
			var unsafe *reset.UnsafeError
			if errors.As(err, &unsafe) {
				return withCode(exitUnsafe, err)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "reset even if the etcd member cannot be removed safely (its data and keys are kept under NAME.reset-TIME)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what reset would do and change nothing")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the files live under (for tests and rescue systems)")
	_ = cmd.Flags().MarkHidden("root")
	return cmd
}

// printReset prints what reset did, one line per thing, so an operator
// can check it and a script can grep it.
func printReset(w io.Writer, r reset.Report, done bool) {
	verb := func(done, would string) string {
		if r.DryRun {
			return would
		}
		return done
	}
	if r.Etcd != "" {
		fmt.Fprintf(w, "etcd:      %s\n", r.Etcd)
	}
	if r.LeaderMoved != "" {
		fmt.Fprintf(w, "leader:    moved to %s\n", r.LeaderMoved)
	}
	if r.MemberRemoved != "" {
		fmt.Fprintf(w, "%s etcd member %s; voters left: %s\n", verb("removed  ", "would remove"), r.MemberRemoved, strings.Join(r.Voters, ", "))
	}
	for _, u := range r.Units {
		fmt.Fprintf(w, "%s unit %s\n", verb("removed  ", "would remove"), u)
	}
	for _, u := range r.Disabled {
		fmt.Fprintf(w, "disabled  unit %s\n", u)
	}
	for _, p := range r.Backups {
		fmt.Fprintf(w, "kept aside %s\n", p)
	}
	for _, p := range r.Removed {
		fmt.Fprintf(w, "%s %s\n", verb("removed  ", "would remove"), p)
	}
	for _, p := range r.Kept {
		fmt.Fprintf(w, "kept      %s\n", p)
	}
	for _, m := range r.Warnings {
		fmt.Fprintf(w, "warning:  %s\n", m)
	}
	for _, st := range r.Steps {
		fmt.Fprintf(w, "step      %s\n", st)
	}
	if done && !r.DryRun {
		fmt.Fprintf(w, "%s is reset; `ecom-agent join` joins it again as a new node\n", r.Node)
	}
}

// confirm asks question on the terminal and returns nil on "y" or "yes";
// without a terminal it is a usage error saying noTerminal, and any other
// answer an error saying cancelled.
func (c *cli) confirm(question, noTerminal, cancelled string) error {
	if !isTerminal(c.stdin) {
		return usageError{errors.New(noTerminal)}
	}
	fmt.Fprintf(c.stderr, "%s [y/N] ", question)
	answer, _ := bufio.NewReader(c.stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return withCode(exitFailure, errors.New(cancelled))
	}
	return nil
}
