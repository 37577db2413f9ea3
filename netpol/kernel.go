// Package netpol is the node's NetworkPolicy enforcement on the kernel's
// side: kube-router's network-policy controller (the engine k3s embeds)
// started as a library, what that engine holds in the kernel read back
// for the status, and its removal when policy is switched off or the node
// is reset. The component that runs it is agent/policy.
package netpol

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ecom-platform/ecom-agent/units"
)

// The chain and ipset names of kube-router's network-policy controller
// (pkg/controllers/netpol in kube-router v2.1.0): everything of the
// engine's in the kernel is named so, and nothing else of ours or the
// operator's.
const (
	inputChain   = "KUBE-ROUTER-INPUT"
	forwardChain = "KUBE-ROUTER-FORWARD"
	outputChain  = "KUBE-ROUTER-OUTPUT"
	// routerPrefix is the top-level chains' prefix.
	routerPrefix = "KUBE-ROUTER-"
	// policyPrefix names one chain per NetworkPolicy (and the default
	// chain KUBE-NWPLCY-DEFAULT).
	policyPrefix = "KUBE-NWPLCY-"
	// podPrefix names one firewall chain per local pod a policy selects.
	podPrefix = "KUBE-POD-FW-"
	// The ipsets of the policies' peers.
	srcSetPrefix = "KUBE-SRC-"
	dstSetPrefix = "KUBE-DST-"
)

// hooks are the built-in chains and the engine's chain each one jumps to.
var hooks = []struct{ builtin, chain string }{
	{"INPUT", inputChain}, {"FORWARD", forwardChain}, {"OUTPUT", outputChain},
}

// Kernel is what of the engine the kernel holds.
type Kernel struct {
	// Hooked lists the built-in chains that jump to the engine's chains;
	// enforcement needs all three (INPUT, FORWARD, OUTPUT).
	Hooked []string
	// PolicyChains counts the chains of NetworkPolicies (the default
	// chain not counted); PodChains the firewall chains of local pods a
	// policy selects.
	PolicyChains int
	PodChains    int
}

// Enforcing reports whether every hook is in place.
func (k Kernel) Enforcing() bool { return len(k.Hooked) == len(hooks) }

// Missing lists the built-in chains that do not jump to the engine.
func (k Kernel) Missing() []string {
	var out []string
	for _, h := range hooks {
		if !slices.Contains(k.Hooked, h.builtin) {
			out = append(out, h.builtin)
		}
	}
	return out
}

// ReadKernel reads the filter table (iptables-save) and says what of the
// engine is in it.
func ReadKernel(ctx context.Context, r units.Runner) (Kernel, error) {
	out, err := r.Output(ctx, "iptables-save", "-t", "filter")
	if err != nil {
		return Kernel{}, fmt.Errorf("read the filter table: %w", err)
	}
	return parseFilter(string(out)), nil
}

// parseFilter reads iptables-save's filter table.
func parseFilter(save string) Kernel {
	var k Kernel
	for line := range strings.SplitSeq(save, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && strings.HasPrefix(f[0], ":"):
			name := strings.TrimPrefix(f[0], ":")
			switch {
			case strings.HasPrefix(name, policyPrefix) && name != policyPrefix+"DEFAULT":
				k.PolicyChains++
			case strings.HasPrefix(name, podPrefix):
				k.PodChains++
			}
		case len(f) > 3 && f[0] == "-A":
			for _, h := range hooks {
				if f[1] == h.builtin && f[len(f)-2] == "-j" && f[len(f)-1] == h.chain && !slices.Contains(k.Hooked, h.builtin) {
					k.Hooked = append(k.Hooked, h.builtin)
				}
			}
		}
	}
	return k
}

// engineChain reports whether a chain is the engine's.
func engineChain(name string) bool {
	return strings.HasPrefix(name, routerPrefix) || strings.HasPrefix(name, policyPrefix) || strings.HasPrefix(name, podPrefix)
}

// engineSet reports whether an ipset is the engine's.
func engineSet(name string) bool {
	return strings.HasPrefix(name, srcSetPrefix) || strings.HasPrefix(name, dstSetPrefix)
}

// Cleanup removes everything of the engine from the kernel: the jumps
// from INPUT, FORWARD and OUTPUT, its chains, then its ipsets. It touches
// no other rule, chain or set (kube-proxy's, the agent's masquerade rule
// and the operator's stay). The engine must not be running. It returns
// what it removed, and the first error.
func Cleanup(ctx context.Context, r units.Runner) (removed int, err error) {
	keep := func(e error) {
		if err == nil {
			err = e
		}
	}
	// Jumps first, by rule number from the last one, so the numbers of
	// the ones still to delete do not move.
	for _, h := range hooks {
		out, lerr := r.Output(ctx, "iptables", "-w", "5", "-t", "filter", "-L", h.builtin, "-n", "--line-numbers")
		if lerr != nil {
			keep(fmt.Errorf("list %s: %w", h.builtin, lerr))
			continue
		}
		nums := jumpRules(string(out))
		for _, n := range slices.Backward(nums) {
			if _, derr := r.Output(ctx, "iptables", "-w", "5", "-t", "filter", "-D", h.builtin, strconv.Itoa(n)); derr != nil {
				keep(fmt.Errorf("delete rule %d of %s: %w", n, h.builtin, derr))
				continue
			}
			removed++
		}
	}
	out, serr := r.Output(ctx, "iptables", "-w", "5", "-t", "filter", "-S")
	if serr != nil {
		keep(fmt.Errorf("list the filter table: %w", serr))
		return removed, err
	}
	var chains []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "-N" && engineChain(f[1]) {
			chains = append(chains, f[1])
		}
	}
	// Chains jump to one another: empty them all before deleting any.
	for _, c := range chains {
		if _, ferr := r.Output(ctx, "iptables", "-w", "5", "-t", "filter", "-F", c); ferr != nil {
			keep(fmt.Errorf("flush %s: %w", c, ferr))
		}
	}
	for _, c := range chains {
		if _, xerr := r.Output(ctx, "iptables", "-w", "5", "-t", "filter", "-X", c); xerr != nil {
			keep(fmt.Errorf("delete chain %s: %w", c, xerr))
			continue
		}
		removed++
	}
	sets, lerr := r.Output(ctx, "ipset", "list", "-n")
	if lerr != nil {
		keep(fmt.Errorf("list the ipsets: %w", lerr))
		return removed, err
	}
	for name := range strings.FieldsSeq(string(sets)) {
		if !engineSet(name) {
			continue
		}
		if _, derr := r.Output(ctx, "ipset", "destroy", name); derr != nil {
			keep(fmt.Errorf("destroy ipset %s: %w", name, derr))
			continue
		}
		removed++
	}
	return removed, err
}

// jumpRules reads `iptables -L CHAIN -n --line-numbers` and returns the
// numbers of the rules whose target is one of the engine's chains.
func jumpRules(list string) []int {
	var nums []int
	for line := range strings.SplitSeq(list, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || !engineChain(f[1]) {
			continue
		}
		nums = append(nums, n)
	}
	return nums
}
