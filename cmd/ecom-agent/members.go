package main

import (
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
			st, err := status.QueryStatus(cmd.Context(), socket)
			if err != nil {
				return withCode(exitFailure, fmt.Errorf("the agent does not answer (%v): members needs the running daemon; "+
					"check `systemctl status ecom-agent` or run `ecom-agent status`", err))
			}
			if output != outTable {
				return writeDocument(c.stdout, st.Gossip, output)
			}
			printMembers(c.stdout, st.Gossip)
			return nil
		},
	}
	addOutputFlag(cmd, &output)
	cmd.Flags().StringVar(&socket, "socket", bootstrap.AgentSocket, "the agent's control socket")
	return cmd
}
