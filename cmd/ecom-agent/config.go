package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/config"
)

func (c *cli) configCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check a config file, or print the commented example",
	}
	cmd.AddCommand(c.configValidateCommand(), c.configPrintDefaultsCommand())
	return cmd
}

func (c *cli) configValidateCommand() *cobra.Command {
	var rootDir, hostname string
	var addrs []string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the config file and list every problem; exit 0 valid, 78 invalid",
		Long: `validate reads the config file (--config) as the agent does and prints every
problem in it at once, each with its line, or a summary of the node it
describes. It writes nothing and needs no running agent.

It checks what the agent checks: the syntax, unknown keys, types and values,
and that the secret files it names exist, are private and hold a good
secret. Secret files are looked up under --root (default /). What depends
on the host (node_name defaults to its hostname, advertise_address to its
only address) comes from this machine unless --hostname and --host-address
say which host to check for, as in CI or configuration management.

Exit codes: 0 valid; 78 invalid or unreadable; 64 wrong command line.`,
		Example: `  ecom-agent config validate
  ecom-agent config validate --config cp.toml --root /srv/ci/secrets --hostname cp-1 --host-address 10.0.0.11`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := config.DefaultLoadOptions()
			if rootDir != "" {
				if !isAbsDir(rootDir) {
					return usageError{fmt.Errorf("--root %q: want an existing directory's absolute path", rootDir)}
				}
				opts.Root = rootDir
			}
			if hostname != "" {
				opts.Hostname = func() (string, error) { return hostname, nil }
			}
			if len(addrs) > 0 {
				var parsed []netip.Addr
				for _, a := range addrs {
					ip, err := netip.ParseAddr(a)
					if err != nil {
						return usageError{fmt.Errorf("--host-address %q: not an IP address", a)}
					}
					parsed = append(parsed, ip)
				}
				opts.HostAddrs = func() ([]netip.Addr, error) { return parsed, nil }
			}
			cfg, err := config.Load(c.configPath, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "%s: valid: %s node %s (%s) of cluster %s, Kubernetes %s\n",
				c.configPath, cfg.Role, cfg.NodeName, cfg.AdvertiseAddress, cfg.ClusterName, cfg.KubernetesVersion)
			return nil
		},
	}
	cmd.Flags().StringVar(&rootDir, "root", "", "directory the secret files are looked up under (default /)")
	cmd.Flags().StringVar(&hostname, "hostname", "", "check for a host of this name (default: this machine's)")
	cmd.Flags().StringSliceVar(&addrs, "host-address", nil, "check for a host with these addresses (default: this machine's)")
	return cmd
}

func (c *cli) configPrintDefaultsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "print-defaults",
		Short: "Print the commented example config: every key, with its default",
		Long: `print-defaults prints the commented example config the package ships: every
key with what it does, the defaults commented out, cluster_name and role set
to examples, and the secrets read from files. Edit it and check it with
config validate.`,
		Example: "  ecom-agent config print-defaults > /etc/ecom-agent/config.toml",
		RunE: func(*cobra.Command, []string) error {
			_, err := c.stdout.Write(config.Example)
			return err
		},
	}
}

// isAbsDir reports whether p is an absolute path to a directory.
func isAbsDir(p string) bool {
	if !filepath.IsAbs(p) {
		return false
	}
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
