package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
)

// caWarning is how far ahead check-expiration warns about a CA's expiry:
// CAs are not rotated automatically, so operators need a long lead time.
const caWarning = 365 * 24 * time.Hour

func (c *cli) certsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Inspect and renew this node's certificates",
	}
	cmd.AddCommand(c.checkExpirationCommand(), &cobra.Command{
		Use:   "renew [NAME|all]",
		Short: "Re-issue leaf certificates now",
		Args:  cobra.MaximumNArgs(1),
		RunE:  notYet("on-demand renewal arrives with the daemon's renewal loop in a later release; `ecom-agent render` already re-issues certificates inside the renewal window"),
	})
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
