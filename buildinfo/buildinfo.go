// Package buildinfo holds what the build stamps into the binary.
package buildinfo

// Version is the agent's version, set at link time by the Makefile
// (-X github.com/ecom-platform/ecom-agent/buildinfo.Version=...).
var Version = "dev"

// Commit is the git commit the binary was built from, set at link time by
// the Makefile (-X .../buildinfo.Commit=...); "" when the build did not
// say (the builds turn Go's own VCS stamp off for reproducible output).
var Commit string
