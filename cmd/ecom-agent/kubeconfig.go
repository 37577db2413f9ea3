package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/bootstrap"
)

func (c *cli) kubeconfigCommand() *cobra.Command {
	var user, server, out, rootDir string
	var groups []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print a kubeconfig for a workstation, with a client certificate of a given user and groups",
		Long: `kubeconfig issues a client certificate from the cluster CA (on a
control-plane node) for --user and --group, valid for --ttl, and prints a
kubeconfig that embeds it, pointing at --server (default: the config's
control_plane_endpoint, else this node's API server at its advertised
address).

The default group, kubeadm:cluster-admins, is cluster-admin through a
binding the agent creates; name another group to give only the rights your
RBAC binds to it. A client certificate cannot be revoked before it expires:
keep --ttl short, and remove the RBAC bindings of its user or group to take
its rights away. system:masters, which RBAC cannot restrict, is refused
(super-admin.conf on a control-plane node is the break-glass identity).`,
		Example: "  ecom-agent kubeconfig --user alice --ttl 8h > alice.conf\n" +
			"  ecom-agent kubeconfig --user ci --group shop-deployers --server https://10.0.0.11:6443 --out ci.conf",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, root, err := c.nodeSetup(rootDir)
			if err != nil {
				return err
			}
			if out != "" {
				if _, err := os.Lstat(out); err == nil {
					return withCode(exitFailure, fmt.Errorf("%s exists; nothing was written: name another file", out))
				} else if !errors.Is(err, fs.ErrNotExist) {
					return withCode(exitFailure, err)
				}
			}
			data, cert, err := bootstrap.UserKubeconfig(root, cfg, bootstrap.UserKubeconfigOptions{
				User: user, Groups: groups, Server: server, TTL: ttl,
			})
			if err != nil {
				return withCode(exitFailure, err)
			}
			if out == "" {
				_, err = c.stdout.Write(data)
			} else {
				err = writeNew(out, data)
			}
			if err != nil {
				return withCode(exitFailure, err)
			}
			fmt.Fprintf(c.stderr, "issued a client certificate for user %q, groups %v, serial %x, valid until %s\n",
				cert.Subject.CommonName, cert.Subject.Organization, cert.SerialNumber, cert.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&user, "user", "admin", "the certificate's user (common name)")
	cmd.Flags().StringSliceVar(&groups, "group", []string{bootstrap.AdminGroup}, "the certificate's groups (repeat or comma-separate)")
	cmd.Flags().StringVar(&server, "server", "", "the API server URL in the kubeconfig (default: this node's advertised API server)")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "the certificate's lifetime (at most 8760h)")
	cmd.Flags().StringVar(&out, "out", "", "write the kubeconfig to this new file (mode 0600) instead of stdout")
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the node's files are under")
	_ = cmd.Flags().MarkHidden("root")
	return cmd
}

// writeNew writes data to a new file, mode 0600, whole or not at all.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}
