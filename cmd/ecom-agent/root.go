package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/buildinfo"
	"github.com/ecom-platform/ecom-agent/config"
)

// cli holds what every command shares: streams, the global flags and
// the logger built from them.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configPath     string
	logLevel       string
}

func (c *cli) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: lvl}))
}

// loadConfig reads the node's config; errors come back as *config.Error so
// main exits with the config exit code.
func (c *cli) loadConfig() (*config.Config, error) {
	return config.Load(c.configPath, config.DefaultLoadOptions())
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// `ecom-agent etcd` hands its whole command line to etcd untouched, so
	// etcd's own flag parsing and help apply.
	if len(args) > 0 && args[0] == "etcd" {
		return runEtcd(args[1:])
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	root := c.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	var ue usageError
	// cobra reports an unknown subcommand with a plain error; it is a
	// usage mistake all the same.
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		err = usageError{err}
	}
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "ecom-agent: "+ue.Error())
		fmt.Fprintln(stderr, "Run 'ecom-agent --help' for usage.")
		return exitUsage
	}
	return report(stderr, err)
}

// usageError is a mistake on the command line.
type usageError struct{ error }

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "ecom-agent",
		Short: "Bootstrap and run a bare-metal Kubernetes node",
		Long: `ecom-agent runs on every control-plane and worker host. It generates the
cluster PKI, renders the configs of etcd, the control plane and the kubelet,
runs them as systemd units, forms the etcd quorum with its peers by gossip,
and seeds the platform's workloads once the API server is healthy.`,
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVarP(&c.configPath, "config", "c", config.DefaultPath, "agent config file")
	root.PersistentFlags().StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(
		c.joinCommand(),
		c.runCommand(),
		c.statusCommand(),
		c.verifyCommand(),
		c.membersCommand(),
		c.renderCommand(),
		c.certsCommand(),
		c.tokenCommand(),
		c.resetCommand(),
		etcdCommand(),
		c.versionCommand(),
		c.internalCommand(),
	)
	for _, cmd := range root.Commands() {
		if cmd.Args == nil {
			cmd.Args = cobra.NoArgs
		}
		args := cmd.Args
		cmd.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return usageError{err}
			}
			return nil
		}
	}
	return root
}

func (c *cli) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the agent's version",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(c.stdout, "ecom-agent %s\n", buildinfo.Version)
			return nil
		},
	}
}
