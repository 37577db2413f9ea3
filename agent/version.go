// Package agent is ecom-agent's daemon: the phases it runs on a node, its
// state on disk, and what it tells systemd and operators.
package agent

// Version is the agent's version, set at link time by the Makefile
// (-X github.com/ecom-platform/ecom-agent/agent.Version=...).
var Version = "dev"
