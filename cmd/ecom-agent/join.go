package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/agent/workercreds"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/preflight"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/units"
)

// refusedAfter is how long a refusal must last before join gives up on
// it: gossip and the quorum settle within seconds, a wrong secret stays.
const refusedAfter = 30 * time.Second

func (c *cli) joinCommand() *cobra.Command {
	var timeout time.Duration
	var socket string
	var skipPreflight bool
	cmd := &cobra.Command{
		Use:   "join",
		Short: "Join this node to its cluster: enable and start the agent, wait for it (cloud-init friendly)",
		Long: `join is what cloud-init runs on every node, with the same config on all of
them (written to /etc/ecom-agent/config.toml by write_files). It checks the
config, enables and starts ecom-agent.service, and waits until the node
reaches its target phase (a control-plane node: its etcd member serving in
the cluster, its kube-apiserver ready and admin.conf usable), printing progress on stderr. Running it again on a joined
node prints what it found and exits 0; on a half-joined node the agent
resumes where it stopped.

It never blocks boot: the agent tells systemd it is ready as soon as it
serves, and join waits on the agent's socket, not on any unit ordered
after cloud-init.

Before it starts anything it runs preflight checks: on a control-plane node
the Kubernetes programs exist, run and fit the version skew policy; on a
fresh node the advertise address is this host's and the ports the agent and
its units listen on are free. Every failure is printed with its fix.

Exit codes: 0 joined; 78 invalid config (nothing done); 3 a preflight check
failed (nothing started); 4 --timeout passed
(the message says what the node waits for); 5 refused by the cluster
(wrong cluster secret or name, mismatched expect, another CA; a worker's
join token unknown, expired or another CA's, or its name taken); 1
anything else.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := c.loadConfig()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			start := time.Now()
			if st, err := status.QueryStatus(ctx, socket); err == nil && reached(cfg, st) {
				fmt.Fprintf(c.stdout, "already joined: %s\n", summary(st))
				return nil
			}
			root, err := hostfs.New("/")
			if err != nil {
				return err
			}
			if !skipPreflight {
				// On a half-joined node the agent's own units hold the
				// ports: only a fresh node has them checked.
				fresh, _ := root.Exists(bootstrap.AgentStateFile)
				if failed := preflight.Preflight(ctx, root, cfg, !fresh); len(failed) > 0 {
					fmt.Fprintf(c.stderr, "ecom-agent: %d preflight check(s) failed; nothing was started:\n", len(failed))
					for _, f := range failed {
						fmt.Fprintf(c.stderr, "  %s\n", strings.ReplaceAll(f.String(), "\n", "\n  "))
					}
					return withCode(exitPreflight, errSilent)
				}
			}
			if err := c.startAgent(ctx, root); err != nil {
				return withCode(exitFailure, err)
			}
			p := &progress{w: c.stderr, tty: isTerminal(c.stderr), start: start}
			defer p.done()
			p.line("ecom-agent.service started; waiting for this node to join")
			return c.awaitJoined(ctx, p, cfg, socket, start, timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "how long to wait for the node to join")
	cmd.Flags().BoolVar(&skipPreflight, "skip-preflight", false, "start the agent even if the preflight checks fail")
	cmd.Flags().StringVar(&socket, "socket", bootstrap.AgentSocket, "the agent's control socket")
	return cmd
}

// startAgent enables and starts ecom-agent.service, installing its unit
// file first if no package did.
func (c *cli) startAgent(ctx context.Context, root *hostfs.Root) error {
	m, err := connectSystemd(ctx, root)
	if err != nil {
		return err
	}
	defer m.Close()
	if _, err := root.Stat(bootstrap.AgentUnitFile); errors.Is(err, fs.ErrNotExist) {
		data, err := units.Render(bootstrap.AgentUnitSpec())
		if err != nil {
			return err
		}
		if _, err := root.WriteFile(bootstrap.AgentUnitFile, data, 0o644); err != nil {
			return err
		}
		if err := m.Reload(ctx); err != nil {
			return err
		}
	}
	if _, err := m.Enable(ctx, bootstrap.AgentUnit); err != nil {
		return err
	}
	st, err := m.Status(ctx, bootstrap.AgentUnit)
	if err != nil {
		return err
	}
	if st.ActiveState == units.Active {
		return nil
	}
	jctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return m.Start(jctx, bootstrap.AgentUnit)
}

// awaitJoined polls the agent until the node reaches its target phase,
// printing each change of what it waits for.
func (c *cli) awaitJoined(ctx context.Context, p *progress, cfg *config.Config, socket string, start time.Time, timeout time.Duration) error {
	deadline := start.Add(timeout)
	var last string
	var refusedSince time.Time
	for {
		st, err := status.QueryStatus(ctx, socket)
		line := ""
		switch {
		case err != nil:
			line = "the agent does not answer yet: " + err.Error()
		case reached(cfg, st):
			p.line("joined: " + summary(st))
			p.done()
			fmt.Fprintf(c.stdout, "joined: %s\n", summary(st))
			return nil
		default:
			line = fmt.Sprintf("%s: %s", st.Phase, orDash(st.Waiting))
			if st.GossipError != "" {
				line = "cannot join gossip: " + st.GossipError
			}
		}
		if line != last || p.tty {
			// On a terminal the one line is redrawn every second, so
			// the clock runs; otherwise a line per change, for logs.
			p.line(line)
			last = line
		}
		if err == nil && st.Refused {
			if refusedSince.IsZero() {
				refusedSince = time.Now()
			} else if time.Since(refusedSince) >= refusedAfter {
				return withCode(exitRefused, fmt.Errorf("refused by the cluster: %s", line))
			}
		} else {
			refusedSince = time.Time{}
		}
		if time.Now().After(deadline) {
			return withCode(exitTimeout, fmt.Errorf("not joined after %s; still waiting for: %s (run `ecom-agent status` for details)", timeout, line))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// reached reports whether the node is where join takes it.
func reached(cfg *config.Config, st status.Status) bool {
	if cfg.IsControlPlane() {
		// A standby is where a control-plane node beyond the cluster's
		// size belongs: the reconciler adds it when a member is missing.
		// Otherwise it is there once its etcd member serves in a
		// cluster with a leader, its kube-apiserver is ready and the
		// bootstrap RBAC is in place (admin.conf works).
		if st.Phase == nodestate.PhaseStandby {
			return true
		}
		return st.Phase == nodestate.PhaseAPIReady && st.Etcd != nil && st.Etcd.Leader != "" &&
			st.ControlPlane != nil && st.ControlPlane.RBAC
	}
	// A worker is there once it holds its credentials: the
	// worker-credentials component no longer waits for them (nor is
	// refused them).
	return st.Phase == nodestate.PhaseWorkerWaiting && !slices.ContainsFunc(st.Conditions, func(c status.Condition) bool {
		return c.Component == workercreds.Name && (c.Reason == status.ReasonWaitForCredentials || c.Refused)
	})
}

func summary(st status.Status) string {
	s := fmt.Sprintf("%s (%s) phase %s", st.Node.Name, st.Node.Role, st.Phase)
	if st.Phase == nodestate.PhaseStandby {
		s += ": " + st.Waiting
	}
	if st.Etcd != nil {
		s += fmt.Sprintf(", etcd cluster %s with %d members, leader %s", st.Etcd.ClusterID, len(st.Etcd.Members), st.Etcd.Leader)
	}
	if cp := st.ControlPlane; cp != nil && cp.Ready {
		s += ", kube-apiserver ready"
	}
	return s
}

// progress shows join's progress on stderr: one line redrawn in place
// on a terminal, a line per change otherwise (cloud-init's log).
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	open  bool
}

func (p *progress) line(msg string) {
	if p.tty {
		fmt.Fprintf(p.w, "\r\x1b[2K[%5.1fs] %s", time.Since(p.start).Seconds(), msg)
		p.open = true
		return
	}
	fmt.Fprintf(p.w, "[%5.1fs] %s\n", time.Since(p.start).Seconds(), msg)
}

// done ends a line left open on a terminal.
func (p *progress) done() {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}
