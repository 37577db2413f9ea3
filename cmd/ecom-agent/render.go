package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/hostfs"
)

func (c *cli) renderCommand() *cobra.Command {
	var rootDir, output string
	cmd := &cobra.Command{
		Use:   "render --root DIR",
		Short: "Write the files this node would get (PKI, configs, kubeconfigs, units) under DIR",
		Long: `render writes exactly the files this node would get, under DIR instead of /,
and prints what it wrote. Running it again changes nothing that need not
change: valid certificates are kept, unchanged files keep their bytes and
modification times, and CAs are never overwritten.`,
		Example: "  ecom-agent render --config /etc/ecom-agent/config.toml --root /tmp/node1",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rootDir == "" {
				return usageError{fmt.Errorf("--root is required: render writes under a directory, never over this host's /")}
			}
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("--output %q: want text or json", output)}
			}
			cfg, err := c.loadConfig()
			if err != nil {
				return err
			}
			root, err := hostfs.New(rootDir)
			if err != nil {
				return usageError{fmt.Errorf("--root: %w", err)}
			}
			r := bootstrap.NewRenderer(cfg, root, c.logger())
			written, err := r.Run(cmd.Context())
			if output == "json" {
				enc := json.NewEncoder(c.stdout)
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(written); jerr != nil && err == nil {
					err = jerr
				}
			} else {
				printWritten(c, root, written)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&rootDir, "root", "", "directory to write the node's files under (required)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printWritten(c *cli, root *hostfs.Root, written []bootstrap.Written) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	counts := map[string]int{}
	for _, w := range written {
		counts[w.Action]++
		fmt.Fprintf(tw, "%s\t%s\t%s\n", w.Action, root.Path(w.Path), w.Note)
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "%d files: %d created, %d updated, %d unchanged\n",
		len(written), counts["created"], counts["updated"], counts["unchanged"])
}
