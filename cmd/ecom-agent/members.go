package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/status"
)

func (c *cli) membersCommand() *cobra.Command {
	var output, socket string
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the nodes this agent sees in gossip (like consul members)",
		Long: `members asks the running agent for its gossip view: every node it knows,
alive, suspect, dead or left, with its address, role, bootstrap phase, the
etcd cluster it belongs to and its agent version. It needs the daemon: the
gossip view lives in its memory (use status when the daemon is down).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("--output %q: want table or json", output)}
			}
			st, err := status.QueryStatus(cmd.Context(), socket)
			if err != nil {
				return withCode(exitFailure, fmt.Errorf("the agent does not answer (%v): members needs the running daemon; "+
					"check `systemctl status ecom-agent` or run `ecom-agent status`", err))
			}
			if output == "json" {
				enc := json.NewEncoder(c.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st.Gossip)
			}
			printMembers(c.stdout, st.Gossip)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().StringVar(&socket, "socket", bootstrap.AgentSocket, "the agent's control socket")
	return cmd
}
