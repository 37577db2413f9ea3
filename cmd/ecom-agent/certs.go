package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/status"
)

// caWarning is how far ahead check-expiration warns about a CA's expiry:
// CAs are not rotated automatically, so operators need a long lead time.
const caWarning = 365 * 24 * time.Hour

func (c *cli) certsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Inspect and renew this node's certificates",
	}
	cmd.AddCommand(c.checkExpirationCommand(), c.renewCommand())
	return cmd
}

func (c *cli) renewCommand() *cobra.Command {
	var socket string
	cmd := &cobra.Command{
		Use:   "renew [NAME...|all]",
		Short: "Re-issue leaf certificates now and restart what reads them, one control-plane node at a time",
		Long: `renew asks the running agent to re-issue the named leaf certificates (names
as check-expiration lists them: apiserver, etcd/peer, admin.conf's
/etc/kubernetes/admin.conf ...; default all), then restart the units that
read them. The agent holds a cluster-wide lock while it does, so control-plane
nodes restart one at a time and it waits for etcd and the API server to be
healthy before it lets go. CAs are never renewed. The old files are kept
as NAME.old. The daemon also does this by itself, hourly, for certificates
inside the renewal window (pki.renew_before).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"all"}
			}
			fmt.Fprintf(c.stderr, "renewing %s (waits for the cluster's renewal lock)...\n", strings.Join(args, ", "))
			res, err := status.RequestRenewal(cmd.Context(), socket, args)
			if err != nil {
				return fmt.Errorf("%w; renewal restarts units, so the agent does it: is ecom-agent.service running?", err)
			}
			for _, r := range res.Renewed {
				fmt.Fprintf(c.stdout, "renewed    %s\n", r)
			}
			for _, u := range res.Restarted {
				fmt.Fprintf(c.stdout, "restarted  %s\n", u)
			}
			if res.Error != "" {
				return errors.New(res.Error)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&socket, "socket", bootstrap.AgentSocket, "the agent's control socket")
	return cmd
}

func (c *cli) checkExpirationCommand() *cobra.Command {
	var rootDir, output string
	cmd := &cobra.Command{
		Use:   "check-expiration",
		Short: "List every certificate with its expiry; exit 1 if any is expired or due for renewal",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("--output %q: want table or json", output)}
			}
			root, err := hostfs.New(rootDir)
			if err != nil {
				return usageError{fmt.Errorf("--root: %w", err)}
			}
			opts := pki.Options{}
			cfg, err := c.loadConfig()
			switch {
			case err == nil:
				opts = bootstrap.PKIOptions(cfg)
			case errors.Is(err, fs.ErrNotExist):
				fmt.Fprintf(c.stderr, "note: %s not found; using the default renewal window\n", c.configPath)
			default:
				return err
			}
			statuses, err := bootstrap.CertInventory(root, opts)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(c.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(statuses); err != nil {
					return err
				}
			} else {
				printCertTable(c, statuses)
			}
			due := 0
			for _, s := range statuses {
				if s.Expired || s.WillRenew || s.Error != "" {
					due++
				}
			}
			if due > 0 {
				return withCode(exitFailure, fmt.Errorf("%d certificate(s) expired, unreadable or inside the renewal window", due))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the node's files are under")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func printCertTable(c *cli, statuses []pki.CertStatus) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tEXPIRES\tRESIDUAL\tSIGNED BY\tSTATE")
	for _, s := range statuses {
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tERROR: %s\n", s.Name, s.Error)
			continue
		}
		state := "ok"
		switch {
		case s.Expired:
			state = "EXPIRED"
		case s.WillRenew:
			state = "renew due"
		case s.CA && s.Residual < caWarning:
			state = "CA expires within a year: plan a CA rotation"
		case s.CA:
			state = "ok (CA, not renewed automatically)"
		}
		signer := s.SignedBy
		if signer == "" {
			signer = "unknown"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.NotAfter.UTC().Format("2006-01-02 15:04 MST"), residual(s.Residual), signer, state)
	}
	tw.Flush()
}

// residual prints a duration the way kubeadm does: "364d", "23h".
func residual(d time.Duration) string {
	if d < 0 {
		return "expired"
	}
	if days := int(d.Hours() / 24); days > 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dh", int(d.Hours()))
}
