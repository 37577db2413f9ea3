package main

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	etcdversion "go.etcd.io/etcd/api/v3/version"

	"github.com/ecom-platform/ecom-agent/buildinfo"
	"github.com/ecom-platform/ecom-agent/config"
)

// versions is `version -o json`: what this binary is and what it runs.
type versions struct {
	// Version is the agent's (git describe at build time).
	Version string `json:"version"`
	// Commit is the git commit it was built from, "" when the build did
	// not record it (-buildvcs=false); Modified says the tree had
	// uncommitted changes.
	Commit   string `json:"commit"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	// Kubernetes is the default kubernetes_version: the Kubernetes
	// release this agent renders for unless the config names another.
	Kubernetes string `json:"kubernetes"`
	// Etcd is the etcd built into this binary (`ecom-agent etcd`).
	Etcd string `json:"etcd"`
}

func currentVersions() versions {
	v := versions{Version: buildinfo.Version, Commit: buildinfo.Commit, Go: runtime.Version(),
		Kubernetes: config.DefaultKubernetesVersion, Etcd: etcdversion.Version}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = cmp.Or(v.Commit, s.Value)
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	return v
}

// versionText is `version` and `--version` (one format for both).
func versionText(v versions) string {
	commit := v.Commit
	switch {
	case commit == "":
		commit = "unknown (not recorded by the build)"
	case v.Modified:
		commit += " (modified)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ecom-agent %s\n", v.Version)
	fmt.Fprintf(&b, "commit      %s\n", commit)
	fmt.Fprintf(&b, "go          %s\n", v.Go)
	fmt.Fprintf(&b, "kubernetes  %s (the default kubernetes_version)\n", v.Kubernetes)
	fmt.Fprintf(&b, "etcd        %s (built in)\n", v.Etcd)
	return b.String()
}

func (c *cli) versionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the agent's version, commit, and the Go, Kubernetes and etcd versions",
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := currentVersions()
			if output != outTable {
				return writeDocument(c.stdout, v, output)
			}
			_, err := fmt.Fprint(c.stdout, versionText(v))
			return err
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}
