// Package testhost starts Debian test hosts on this machine, each with a real
// systemd as PID 1, its own network namespace and address, its own hostname
// and its own copy-on-write root file system, so that end-to-end tests can
// treat them as separate machines:
//
//	env := testhost.New(t, testhost.Options{})
//	hosts := env.Start(t, 3)                 // boots three hosts in parallel
//	hosts[0].MustRun(t, "systemctl", "is-active", "dbus")
//	hosts[1].CopyIn("bin/ecom-agent", "/usr/bin/ecom-agent", 0o755)
//	hosts[2].Kill()                          // power cut
//	hosts[2].Restart(ctx)                    // same disk, boots again
//
// # How a host is made
//
// The hosts of one environment share a bridge (ect<id>br, 10.77.N.1/24, one
// /24 per environment) and boot from one cached Debian root file system
// (see build-rootfs.sh). Each host has:
//
//   - an overlayfs whose lower layer is the cached root file system and whose
//     upper layer is the host's own disk, kept across restarts;
//   - a network namespace (ecomtest-<id>-<name>) with a veth pair: one end on
//     the bridge, the other inside as eth0 with address 10.77.N.(10+i);
//   - a cgroup (ecomtest/<id>/<name>) in every hierarchy of the machine,
//     which becomes the root of the host's cgroup namespace;
//   - fresh PID, mount, UTS, IPC and cgroup namespaces, with /proc, a
//     read-only /sys, the cgroup hierarchies and a minimal /dev mounted
//     before systemd is started after pivot_root into the overlay.
//
// systemd is never started over the machine's own root: its boot-time
// tmpfiles pass would empty the machine's /tmp. Both the Go code and the
// boot script refuse to boot unless the root is an overlay of this package.
//
// # State and cleanup
//
// Everything an environment creates is named after its random ID and
// recorded in a state file, StateDir/envs/<id>/state.json, together with the
// process that owns it. Close tears it all down; a test registers Close with
// t.Cleanup. Open first runs Sweep, which tears down what earlier processes
// left behind when they were killed: environments whose owner is dead, or
// that were made before the machine last booted. Detached environments (the
// testhosts command's) have no owner and last until torn down explicitly.
//
// The Go testing helpers (New, Start, Env.Start, Host.MustRun) are a thin
// layer over a core that takes contexts and returns errors (Open,
// Env.StartHosts, Host.Run, ...), which cmd/testhosts uses as well.
package testhost
