package main

import (
	"context"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/ecom-platform/ecom-agent/agent"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/logging"
	"github.com/ecom-platform/ecom-agent/units"
)

func (c *cli) runCommand() *cobra.Command {
	var join []string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent daemon (started by ecom-agent.service)",
		Long: `run is the daemon ecom-agent.service starts. It renders this node's files,
hands etcd and the Kubernetes components to systemd, tells systemd when the
node is ready (Type=notify, STATUS= lines in systemctl status), and keeps
watching until it gets SIGTERM. The units it manages keep running when it
stops.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.loadConfig()
			if err != nil {
				return err
			}
			cfg.Gossip.Join = append(cfg.Gossip.Join, join...)
			log := logging.New(c.stderr, c.logLevel)
			// client-go (leader election, reflectors) logs through klog:
			// into the same structured log, not raw lines on stderr.
			klog.SetSlogLogger(log.With("component", "client-go"))
			root, err := hostfs.New("/")
			if err != nil {
				return err
			}
			watchdog, err := daemon.SdWatchdogEnabled(false)
			if err != nil {
				log.Warn("ignoring the systemd watchdog setting", "err", err)
			}
			d := agent.New(agent.Deps{
				Config: cfg,
				Root:   root,
				Log:    log,
				Systemd: func(ctx context.Context) (agent.Systemd, error) {
					return units.Connect(ctx, root, units.Options{})
				},
				Notify: func(state string) error {
					_, err := daemon.SdNotify(false, state)
					return err
				},
				Watchdog: watchdog,
				Socket:   root.Path(bootstrap.AgentSocket),
			})
			if err := d.Run(cmd.Context()); err != nil {
				log.Error("agent stopped", "err", err)
				return withCode(exitFailure, errSilent)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&join, "join", nil, "more gossip addresses to join (host or host:port), added to gossip.join of the config")
	return cmd
}
