package main

import (
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
modification times, and CAs are never overwritten.

The table shows each file where it was written (under DIR); -o json and
-o yaml list the same files, each with "file" (that path) and "path" (where
the node gets it).`,
		Example: "  ecom-agent render --config /etc/ecom-agent/config.toml --root /tmp/node1",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rootDir == "" {
				return usageError{fmt.Errorf("--root is required: render writes under a directory, never over this host's /")}
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
			if output != outTable {
				if derr := writeDocument(c.stdout, writtenFiles(root, written), output); derr != nil && err == nil {
					err = derr
				}
			} else {
				printWritten(c, root, written)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&rootDir, "root", "", "directory to write the node's files under (required)")
	addOutputFlag(cmd, &output)
	return cmd
}

// writtenFile is one file of `render -o json`.
type writtenFile struct {
	// File is where render wrote it, as the table shows it.
	File string `json:"file"`
	// Path is where the node gets it.
	Path   string `json:"path"`
	Action string `json:"action"`
	Note   string `json:"note,omitempty"`
}

func writtenFiles(root *hostfs.Root, written []bootstrap.Written) []writtenFile {
	out := make([]writtenFile, 0, len(written))
	for _, w := range written {
		out = append(out, writtenFile{File: root.Path(w.Path), Path: w.Path, Action: w.Action, Note: w.Note})
	}
	return out
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
