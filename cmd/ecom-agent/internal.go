package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/units"
)

// internalCommand holds helpers for packaging and tests; it is hidden from
// help because operators never need it.
func (c *cli) internalCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "internal", Short: "Helpers for packaging and tests", Hidden: true}
	cmd.AddCommand(&cobra.Command{
		Use:   "agent-unit",
		Short: "Print ecom-agent.service as the package installs it",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			data, err := units.Render(bootstrap.AgentUnitSpec())
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.stdout, string(data))
			return err
		},
	})
	return cmd
}
