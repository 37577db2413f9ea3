// Package buildinfo holds what the build stamps into the binary.
package buildinfo

// Version is the agent's version, set at link time by the Makefile
// (-X github.com/ecom-platform/ecom-agent/buildinfo.Version=...).
var Version = "dev"
