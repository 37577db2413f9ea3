package main

import (
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/etcdctl/v3/ctlv3"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/pki"
)

// etcdctlCommand is listed for help, completion and its man page; run
// hands `ecom-agent etcdctl ...` to runEtcdctl before cobra parses
// anything, so etcdctl's own flags and help apply.
func etcdctlCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "etcdctl [etcdctl flags] COMMAND",
		Short: "Run etcdctl (built in) against this node's etcd member with the agent's client certificate",
		Long: `etcdctl is etcd's own client, built into ecom-agent from the etcd module
the agent uses, preconfigured for this control-plane node: the local
member's client URL (https://127.0.0.1:<etcd.client_port>), the etcd CA
and the agent's etcd client certificate. A flag given on the command line
(--endpoints, --cacert, --cert, --key) replaces the preset one.

  ecom-agent etcdctl member list -w table
  ecom-agent etcdctl endpoint status --cluster -w table
  ecom-agent etcdctl snapshot save /var/backups/etcd.db`,
		DisableFlagParsing: true,
		Args:               cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			os.Exit(runEtcdctl(args))
			return nil
		},
	}
}

// runEtcdctl runs etcdctl's own main with this node's connection flags
// before args. etcdctl reads os.Args and exits the process on an error.
func runEtcdctl(args []string) int {
	port := 2379
	if cfg, err := config.Load(bootstrap.AgentConfigFile, config.DefaultLoadOptions()); err == nil {
		port = cfg.Etcd.ClientPort
	}
	os.Args = append([]string{"etcdctl"}, etcdctlArgs(port, args)...)
	ctlv3.MustStart()
	return exitOK
}

// etcdctlArgs puts the local member's endpoint and the agent's client
// credentials before args, each unless args set it.
func etcdctlArgs(port int, args []string) []string {
	preset := []struct{ flag, value string }{
		{"--endpoints", "https://127.0.0.1:" + strconv.Itoa(port)},
		{"--cacert", pki.CertPath(string(pki.EtcdCA))},
		{"--cert", pki.CertPath("etcd/healthcheck-client")},
		{"--key", pki.KeyPath("etcd/healthcheck-client")},
	}
	var out []string
	for _, p := range preset {
		given := slices.ContainsFunc(args, func(a string) bool { return a == p.flag || strings.HasPrefix(a, p.flag+"=") })
		if !given {
			out = append(out, p.flag+"="+p.value)
		}
	}
	return append(out, args...)
}
