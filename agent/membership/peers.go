package membership

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/gossip"
	"github.com/ecom-platform/ecom-agent/quorum"
	"github.com/ecom-platform/ecom-agent/status"
)

func gossipMembers(ms []gossip.Member) []status.GossipMember {
	// Alive members sharing a node ID: the quorum refuses them all.
	claims := map[string][]string{}
	for _, m := range ms {
		if m.MetaErr == nil && m.Meta.NodeID != "" && m.State == gossip.StateAlive {
			claims[m.Meta.NodeID] = append(claims[m.Meta.NodeID], displayName(m.Name))
		}
	}
	out := make([]status.GossipMember, 0, len(ms))
	for _, m := range ms {
		g := status.GossipMember{
			Name: displayName(m.Name), Address: m.Addr.Addr().String(), Role: string(m.Meta.Role), State: m.State.String(),
			Since: m.Since, Phase: m.Meta.Phase, Version: m.Meta.Version,
		}
		if m.Meta.EtcdClusterID != 0 {
			g.EtcdClusterID = etcdclient.HexID(m.Meta.EtcdClusterID)
		}
		if m.MetaErr != nil {
			g.Error = m.MetaErr.Error()
		} else if names := claims[m.Meta.NodeID]; len(names) > 1 && m.State == gossip.StateAlive {
			g.Error = fmt.Sprintf("node ID %s is claimed by %s (a copied state file, or an impostor): refused until one goes", m.Meta.NodeID, strings.Join(names, ", "))
		}
		out = append(out, g)
	}
	return out
}

// quorumStatus maps gossip liveness to the quorum package's.
func quorumStatus(s gossip.State) quorum.Status {
	switch s {
	case gossip.StateAlive:
		return quorum.StatusAlive
	case gossip.StateSuspect:
		return quorum.StatusSuspect
	case gossip.StateDead:
		return quorum.StatusDead
	case gossip.StateLeft:
		return quorum.StatusLeft
	}
	return quorum.StatusDead
}

// anchors are the nodes at the configured join addresses (self's ID if it
// is at one of them), complete when every address resolved to a member
// with a node ID: what the quorum's quick settle rests on.
func anchors(g *gossip.Gossip, self quorum.NodeID) quorum.Anchors {
	if g == nil {
		return quorum.Anchors{}
	}
	others, atSelf, ok := g.JoinTargets()
	a := quorum.Anchors{Complete: ok}
	if atSelf {
		a.IDs = append(a.IDs, self)
	}
	ms := g.Members()
	for _, addr := range others {
		i := slices.IndexFunc(ms, func(m gossip.Member) bool {
			return m.Addr == addr && m.MetaErr == nil && m.Meta.NodeID != ""
		})
		if i < 0 {
			a.Complete = false
			continue
		}
		a.IDs = append(a.IDs, quorum.NodeID(ms[i].Meta.NodeID))
	}
	return a
}

// quorumPeers maps the gossip view to the quorum package's peers. A
// member's etcd peer URL is its gossip address with this cluster's etcd
// peer port: every node of a cluster runs the same configuration. Members
// whose metadata does not decode are left out.
func quorumPeers(cfg *config.Config, ms []gossip.Member) []quorum.Peer {
	var out []quorum.Peer
	for _, m := range ms {
		if m.MetaErr != nil || m.Meta.NodeID == "" {
			continue
		}
		out = append(out, quorum.Peer{
			Member: quorum.Member{
				ID:      quorum.NodeID(m.Meta.NodeID),
				Name:    m.Name,
				PeerURL: bootstrap.EtcdPeerURL(m.Addr.Addr(), cfg.Etcd.PeerPort),
			},
			ControlPlane: m.Meta.Role == config.RoleControlPlane,
			ClusterName:  m.Meta.ClusterName,
			Expect:       m.Meta.Expect,
			ClusterID:    m.Meta.EtcdClusterID,
			HasEtcdState: m.Meta.HasEtcdData,
			CommitID:     m.Meta.CommitID,
			Status:       quorumStatus(m.State),
			Since:        m.Since,
		})
	}
	return out
}

// rpcAddrOf returns the RPC endpoint a node advertises, by node ID.
func rpcAddrOf(ms []gossip.Member, id quorum.NodeID) (netip.AddrPort, string, bool) {
	for _, m := range ms {
		if m.MetaErr == nil && quorum.NodeID(m.Meta.NodeID) == id && m.Meta.RPCAddr.IsValid() {
			return m.Meta.RPCAddr, m.Name, true
		}
	}
	return netip.AddrPort{}, "", false
}

// displayName is a gossip member's name as status shows it: quoted, with
// any unprintable characters escaped, when it is not a valid node name
// (a name is a peer's claim; it must not write to an operator's
// terminal).
func displayName(name string) string {
	if config.ValidNodeName(name) {
		return name
	}
	return strconv.Quote(name)
}
