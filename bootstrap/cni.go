package bootstrap

import (
	"encoding/json"
	"fmt"
	"net/netip"
)

// CNIConfFile is the pod network's config, which containerd's CRI plugin
// loads (the only file in CNIConfDir the agent writes).
const CNIConfFile = CNIConfDir + "/10-ecom-agent.conflist"

// PodNetworkName names the CNI network and its bridge's role in logs.
const PodNetworkName = "ecom-pods"

// PodNetworkConfig builds the node's CNI config for its pod CIDR (the
// range the controller manager gave the Node): pods attach to the cni0
// bridge, which is their gateway, and get addresses from the node's range;
// traffic to other nodes' pods is routed by the agent through those nodes'
// addresses (host-gw, as flannel's backend of that name), and traffic
// leaving the cluster's pod range is masqueraded to the node's address.
// mtu, when not 0, is the pods' MTU (the VXLAN backend's, below the link's).
func PodNetworkConfig(podCIDR, clusterCIDR netip.Prefix, mtu int) ([]byte, error) {
	if !podCIDR.IsValid() || !clusterCIDR.Contains(podCIDR.Addr()) {
		return nil, fmt.Errorf("pod CIDR %s is not inside the cluster's pod range %s", podCIDR, clusterCIDR)
	}
	bridge := map[string]any{
		"type":        "bridge",
		"bridge":      "cni0",
		"isGateway":   true,
		"hairpinMode": true,
		// The bridge plugin's ipMasq would also rewrite traffic to other
		// nodes' pods; the agent's own rule spares it.
		"ipMasq": false,
		"ipam": map[string]any{
			"type":   "host-local",
			"ranges": [][]map[string]string{{{"subnet": podCIDR.Masked().String()}}},
			"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
		},
	}
	if mtu > 0 {
		bridge["mtu"] = mtu
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       PodNetworkName,
		"plugins": []any{
			bridge,
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// MasqueradeRule is the agent's NAT rule (after iptables' -t nat -A/-C/-D)
// for a node's pod CIDR inside the cluster's pod range.
func MasqueradeRule(podCIDR, clusterCIDR string) []string {
	return []string{"POSTROUTING", "-s", podCIDR, "!", "-d", clusterCIDR,
		"-m", "comment", "--comment", "ecom-agent: pods to outside the cluster's pod range", "-j", "MASQUERADE"}
}
