package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/verify"
)

// maxProblemLines is how many problems of one check the table lists;
// -o json lists them all.
const maxProblemLines = 10

func (c *cli) verifyCommand() *cobra.Command {
	var kubeconfig, scope, output string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check that the cluster works for the platform; exit 0 passed, 1 a check failed, 2 cannot check",
		Long: `verify checks, with an admin kubeconfig, that the cluster works for the
platform, and prints one line per check: OK, FAIL with the objects at fault
and why, or SKIP.

Scope addons (the add-ons the agent seeds; SKIP when an add-on's Deployment
does not exist, as when it is switched off in the config):
  dns         CoreDNS available, kube-dns with ready endpoints, and
              kubernetes.default.svc.<cluster domain> resolving, asked of the
              kube-dns Service's cluster IP, to the kubernetes Service's
  storage     a default StorageClass, local-path-provisioner available, every
              claim in the platform's namespaces Bound (else its last Warning
              event, or what it waits for)
  metrics     metrics-server available, APIService v1beta1.metrics.k8s.io
              Available, node usage for every Node
Scope platform (the objects labelled app.kubernetes.io/managed-by=ecom-agent):
  workloads   every Deployment, StatefulSet and DaemonSet available (else its
              first pod's reason: ErrImagePull, CrashLoopBackOff, Pending...)
  services    every Service with a selector has a ready endpoint
  hpa         every HorizontalPodAutoscaler ScalingActive with current metrics
  backend     GET /health and /api/products (JSON) through the API server's
              service proxy to ecommerce/backend-service
  frontend    GET / (HTML) the same way from ecommerce/frontend-service
  postgresql  the pods of ecommerce/postgresql Ready and pg_isready answering
              in them (pods/exec)

verify only reads (and runs pg_isready through pods/exec): it creates and
changes no object. The checks run at once, each within --timeout. Exit codes,
as status: 0 every check passed or was skipped, 1 a check failed, 2 nothing
could be checked (no kubeconfig, the API server unreachable or refusing its
credentials). -o json prints the report (schema_version 1: fields are only
added within a version).`,
		Example: `  ecom-agent verify
  ecom-agent verify --scope addons -o json
  ecom-agent verify --kubeconfig ~/.kube/config --timeout 1m`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sc, err := verify.ParseScope(scope)
			if err != nil {
				return usageError{fmt.Errorf("--scope: %w", err)}
			}
			if timeout <= 0 {
				return usageError{fmt.Errorf("--timeout %s: want a positive duration, such as 30s", timeout)}
			}
			cfg, err := verify.LoadKubeconfig(kubeconfig)
			if err != nil {
				return withCode(statusDown, kubeconfigError(kubeconfig, err))
			}
			rep := verify.Run(cmd.Context(), cfg, verify.Options{Scope: sc, Timeout: timeout})
			if err := writeVerify(c.stdout, rep, output, output == "table" && isTerminal(c.stdout)); err != nil {
				return err
			}
			return verifyCode(rep)
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", bootstrap.AdminKubeconfig, "an admin kubeconfig")
	cmd.Flags().StringVar(&scope, "scope", string(verify.ScopeAll), "the checks to run: addons, platform or all")
	addOutputFlag(cmd, &output)
	cmd.Flags().DurationVar(&timeout, "timeout", verify.DefaultTimeout, "how long each check may take")
	return cmd
}

// kubeconfigError says what to do about a kubeconfig that cannot be used.
func kubeconfigError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("kubeconfig %s does not exist: run verify on a control-plane node (the agent writes %s there) or pass --kubeconfig with an admin kubeconfig", path, bootstrap.AdminKubeconfig)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot read kubeconfig %s: permission denied: run verify as root, or pass --kubeconfig with an admin kubeconfig you can read", path)
	}
	// err starts with the path.
	return fmt.Errorf("kubeconfig %w; pass --kubeconfig with an admin kubeconfig", err)
}

// verifyCode is verify's exit, as status's: 0 passed, 1 failed, 2 nothing
// could be checked.
func verifyCode(rep verify.Report) error {
	switch rep.Verdict {
	case verify.Passed:
		return nil
	case verify.Failed:
		return withCode(statusDegraded, errSilent)
	}
	return withCode(statusDown, errSilent)
}

func writeVerify(w io.Writer, rep verify.Report, output string, colour bool) error {
	if output != outTable {
		return writeDocument(w, rep, output)
	}
	printVerify(w, rep, colour)
	return nil
}

// printVerify prints the report as a headline and one line per check,
// each failing check followed by the objects at fault.
func printVerify(w io.Writer, rep verify.Report, colour bool) {
	switch rep.Verdict {
	case verify.Unreachable:
		fmt.Fprintf(w, "%s  %s\n", tint("CANNOT CHECK", "31", colour), rep.Error)
		return
	case verify.Failed:
		failed := rep.Failed()
		fmt.Fprintf(w, "%s  %d of %d checks failed: %s\n", tint("FAILED", "31", colour), len(failed), len(rep.Checks), strings.Join(failed, ", "))
	default:
		skipped := ""
		if n := count(rep, verify.Skip); n > 0 {
			skipped = fmt.Sprintf(" (%d skipped)", n)
		}
		fmt.Fprintf(w, "%s  all %d checks pass%s\n", tint("PASSED", "32", colour), len(rep.Checks), skipped)
	}
	fmt.Fprintf(w, "asked %s, scope %s\n\n", rep.Server, rep.Scope)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
	for _, r := range rep.Checks {
		text := r.Detail
		if r.Status != verify.OK {
			text = r.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, tint(string(r.Status), statusColour[r.Status], colour), text)
		if len(r.Problems) == 1 && r.Reason == r.Problems[0].String() {
			continue // the line says it all
		}
		for i, p := range r.Problems {
			if i == maxProblemLines {
				fmt.Fprintf(tw, "\t\t  ... and %d more (-o json lists them all)\n", len(r.Problems)-i)
				break
			}
			fmt.Fprintf(tw, "\t\t  %s\n", p)
		}
	}
	tw.Flush()
}

var statusColour = map[verify.Status]string{verify.OK: "32", verify.Fail: "31", verify.Skip: "33"}

// tint colours text for a terminal (SGR code: 31 red, 32 green, 33
// yellow); codes of one length keep the table's columns aligned.
func tint(text, code string, colour bool) string {
	if !colour {
		return text
	}
	return "\x1b[1;" + code + "m" + text + "\x1b[0m"
}

func count(rep verify.Report, s verify.Status) int {
	n := 0
	for _, r := range rep.Checks {
		if r.Status == s {
			n++
		}
	}
	return n
}
