package nodecheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// SysctlFile keeps the sysctls EnsureSysctls sets across reboots.
const SysctlFile = "/etc/sysctl.d/90-ecom-agent.conf"

// ensuredSysctls are the sysctls the node needs, all set to 1.
var ensuredSysctls = []string{
	"net.ipv4.ip_forward",
	"net.bridge.bridge-nf-call-iptables",
	"net.bridge.bridge-nf-call-ip6tables",
}

// EnsureSysctls sets the sysctls the node needs, as k3s and k0s do:
// net.ipv4.ip_forward, net.bridge.bridge-nf-call-iptables and
// net.bridge.bridge-nf-call-ip6tables to 1. It writes SysctlFile under root
// atomically, only when its content differs, and writes each value under
// /proc/sys where it is not 1 already. changed names what it wrote: the
// file's path and the sysctls' names, in that order; nothing on a node that
// already has them.
//
// Without /proc/sys/net/bridge (the br_netfilter module is not loaded) it
// still writes the file and ip_forward, and returns a Failure (an error)
// saying to load the module.
func EnsureSysctls(root string) (changed []string, err error) {
	if root == "" {
		root = "/"
	}
	r, err := hostfs.New(root)
	if err != nil {
		return nil, err
	}
	var conf strings.Builder
	conf.WriteString("# Written by ecom-agent: the kubelet needs these. Do not edit; ecom-agent rewrites it.\n")
	for _, key := range ensuredSysctls {
		conf.WriteString(key + " = 1\n")
	}
	res, err := r.WriteFile(SysctlFile, []byte(conf.String()), 0o644)
	if err != nil {
		return changed, err
	}
	if res != hostfs.Unchanged {
		changed = append(changed, SysctlFile)
	}

	noBridge := false
	if _, err := r.Stat("/proc/sys/net/bridge"); errors.Is(err, fs.ErrNotExist) {
		noBridge = true
	}
	for _, key := range ensuredSysctls {
		if noBridge && strings.HasPrefix(key, "net.bridge.") {
			continue
		}
		p := r.Path(sysctlPath(key))
		cur, err := os.ReadFile(p)
		if err != nil {
			return changed, fmt.Errorf("sysctl %s: %w", key, err)
		}
		if strings.TrimSpace(string(cur)) == "1" {
			continue
		}
		if err := writeSysctl(p); err != nil {
			return changed, fmt.Errorf("sysctl %s=1: %w", key, err)
		}
		changed = append(changed, key)
	}
	if noBridge {
		return changed, Failure{"sysctl",
			"/proc/sys/net/bridge does not exist: the br_netfilter module is not loaded, so net.bridge.bridge-nf-call-iptables cannot be set",
			fmt.Sprintf("modprobe br_netfilter, and list it in %s to load it at boot", ModulesLoadFile)}
	}
	return changed, nil
}

// writeSysctl writes "1" to a /proc/sys file. It does not create the file:
// a missing sysctl is an error, not a new file.
func writeSysctl(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString("1\n"); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
