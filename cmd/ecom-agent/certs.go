package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
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
		Args:  cobra.ArbitraryArgs,
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
		Short: "List every certificate with its expiry; exit 1 if any is missing, expired or due for renewal",
		Long: `check-expiration lists every certificate of this node: the PKI files, the
client certificates in the kubeconfigs and the kubelet's, with expiry, time
left, signing CA and whether the next renewal re-issues it. A certificate
the node's role should have and that is not there is a MISSING row.

Exit codes: 0 every certificate is there and valid; 1 one is missing,
unreadable, expired or inside the renewal window (pki.renew_before); 78 the
config cannot be used (without a config file the default window applies).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
				cfg = nil
			default:
				return err
			}
			statuses, err := bootstrap.CertInventory(root, opts)
			if err != nil {
				return err
			}
			rows := withMissing(statuses, cfg)
			if output != outTable {
				if err := writeDocument(c.stdout, rows, output); err != nil {
					return err
				}
			} else {
				printCertTable(c, rows)
			}
			return certProblems(rows, root)
		},
	}
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the node's files are under")
	addOutputFlag(cmd, &output)
	return cmd
}

// certRow is one row of check-expiration: a certificate found, or one
// the node should have and does not (Missing, the other fields empty).
type certRow struct {
	pki.CertStatus
	Missing bool `json:"missing,omitempty"`
}

// expectedCerts lists the certificates a joined node of cfg's role holds,
// named as bootstrap.CertInventory names them. Without a config the role
// is guessed from what is there: a control-plane certificate found means
// a control-plane node.
func expectedCerts(cfg *config.Config, found map[string]bool) []string {
	var cp []string
	for _, n := range pki.CANames() {
		cp = append(cp, string(n))
	}
	// The names only: the node's addresses do not change them.
	for _, s := range pki.ControlPlaneCerts(pki.Node{}) {
		cp = append(cp, s.Name)
	}
	cp = append(cp, bootstrap.AdminKubeconfig, bootstrap.SuperAdminKubeconfig, bootstrap.ControllerManagerKubeconfig,
		bootstrap.SchedulerKubeconfig, bootstrap.AgentKubeconfig, bootstrap.KubeProxyKubeconfig)
	kubelet := []string{bootstrap.KubeletClientCert, bootstrap.KubeletServerCert}
	// A worker gets the cluster CA's certificate and its kubelet's and
	// kube-proxy's from a control-plane agent; its kubelet's serving
	// certificate comes from a CSR the cluster approves.
	worker := append([]string{string(pki.CA), bootstrap.KubeProxyClientCert}, kubelet...)
	controlPlane := cfg != nil && cfg.IsControlPlane()
	if cfg == nil {
		for _, n := range cp[1:] {
			controlPlane = controlPlane || found[n]
		}
	}
	if controlPlane {
		return append(cp, kubelet...)
	}
	return worker
}

// withMissing adds a Missing row for every certificate the node should
// have that the inventory did not find.
func withMissing(statuses []pki.CertStatus, cfg *config.Config) []certRow {
	found := map[string]bool{}
	rows := make([]certRow, 0, len(statuses))
	for _, s := range statuses {
		found[s.Name] = true
		rows = append(rows, certRow{CertStatus: s})
	}
	for _, n := range expectedCerts(cfg, found) {
		if !found[n] {
			path := n
			if !strings.HasPrefix(n, "/") {
				path = pki.CertPath(n)
			}
			rows = append(rows, certRow{CertStatus: pki.CertStatus{Name: n, Path: path}, Missing: true})
		}
	}
	return rows
}

// certProblems is check-expiration's verdict: nil when every certificate
// is there and valid, else an exit-1 error saying what is wrong and what
// to run.
func certProblems(rows []certRow, root *hostfs.Root) error {
	var missing []string
	due := 0
	for _, r := range rows {
		switch {
		case r.Missing:
			missing = append(missing, r.Name)
		case r.Expired || r.WillRenew || r.Error != "":
			due++
		}
	}
	var msgs []string
	switch {
	case len(missing) > 0 && len(missing) == len(rows):
		msgs = append(msgs, fmt.Sprintf("no certificate found under %s: this node has not joined a cluster (or --root is wrong); "+
			"run `ecom-agent join`", root.Dir()))
	case len(missing) > 0:
		msgs = append(msgs, fmt.Sprintf("%d certificate(s) missing (%s): the agent writes what is missing when it starts: "+
			"run `systemctl restart ecom-agent` (`ecom-agent join` on a node that has not joined)", len(missing), strings.Join(missing, ", ")))
	}
	if due > 0 {
		msgs = append(msgs, fmt.Sprintf("%d certificate(s) expired, unreadable or inside the renewal window: "+
			"run `ecom-agent certs renew`", due))
	}
	if len(msgs) == 0 {
		return nil
	}
	return withCode(exitFailure, errors.New(strings.Join(msgs, "; ")))
}

func printCertTable(c *cli, rows []certRow) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tEXPIRES\tRESIDUAL\tSIGNED BY\tSTATE")
	for _, s := range rows {
		if s.Missing {
			fmt.Fprintf(tw, "%s\t-\t-\t-\tMISSING\n", s.Name)
			continue
		}
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
