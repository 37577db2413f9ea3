package reset

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/quorum"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// leavePlan is what planLeave found about this node's etcd member.
type leavePlan struct {
	// err is set when the cluster could not be read: no quorum, or no
	// member answering.
	err       error
	leaving   quorum.Leaving
	selfID    uint64
	selfName  string
	leaderID  uint64
	members   []quorum.EtcdMember
	endpoints map[uint64]string
	tls       *clientv3.Config
}

func (p *leavePlan) safe() bool { return p.err == nil && p.leaving.Safe }

func (p *leavePlan) memberName() string {
	return fmt.Sprintf("%s (%s)", p.selfName, etcdclient.HexID(p.selfID))
}

func (p *leavePlan) describe() string {
	if p.err != nil {
		return "cannot read the etcd cluster's members (" + p.err.Error() + "): without a quorum this member cannot be removed; " +
			"bring the other members back, or use --force"
	}
	return p.leaving.Reason
}

// planLeave reads the member list through any member that answers (this
// node's own etcd first, then the members it started with) and probes
// every member's client URL.
func planLeave(ctx context.Context, root *hostfs.Root, cfg *config.Config, timeout time.Duration) *leavePlan {
	p := &leavePlan{selfName: cfg.NodeName, endpoints: map[uint64]string{}}
	tlsCfg, err := etcdclient.ClientTLS(root)
	if err != nil {
		p.err = err
		return p
	}
	// This node's etcd first, then every member it started with.
	endpoints := []string{bootstrap.EtcdClientURL(netip.MustParseAddr("127.0.0.1"), cfg.Etcd.ClientPort)}
	if st, err := nodestate.ReadState(root); err == nil && st != nil && st.Etcd != nil {
		endpoints = append(endpoints, st.Etcd.Membership().ClientURLs(cfg.Etcd.ClientPort)...)
	}
	p.tls = &clientv3.Config{TLS: tlsCfg, DialTimeout: 3 * time.Second, Logger: zap.NewNop()}
	c := *p.tls
	c.Endpoints = endpoints
	cli, err := clientv3.New(c)
	if err != nil {
		p.err = err
		return p
	}
	defer cli.Close()
	lctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ml, err := cli.MemberList(lctx)
	if err != nil {
		p.err = err
		return p
	}
	self := bootstrap.EtcdPeerURL(cfg.AdvertiseAddress, cfg.Etcd.PeerPort)
	urls := make([]string, len(ml.Members))
	for i, m := range ml.Members {
		if len(m.ClientURLs) > 0 {
			urls[i] = m.ClientURLs[0]
			p.endpoints[m.ID] = urls[i]
		}
	}
	answers, _ := etcdclient.ProbeMembers(ctx, cli, urls)
	for i, m := range ml.Members {
		if m.Name == cfg.NodeName || slices.Contains(m.PeerURLs, self) {
			p.selfID = m.ID
		}
		em := quorum.EtcdMember{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, IsLearner: m.IsLearner, Started: m.Name != "",
			Active: answers[i] != nil}
		if answers[i] != nil && answers[i].Leader != 0 {
			p.leaderID = answers[i].Leader
		}
		p.members = append(p.members, em)
	}
	p.leaving = quorum.Leave(p.selfID, p.members)
	if !p.leaving.Member {
		p.selfID = 0
	}
	return p
}

// remove hands leadership to a healthy voter if this member leads, then
// removes the member through the others. It returns the new leader's name
// when leadership moved.
func (p *leavePlan) remove(ctx context.Context) (string, error) {
	var others []string
	var transferee quorum.EtcdMember
	for _, m := range p.members {
		if m.ID == p.selfID {
			continue
		}
		if ep, ok := p.endpoints[m.ID]; ok && m.Active {
			others = append(others, ep)
			if !m.IsLearner && transferee.ID == 0 {
				transferee = m
			}
		}
	}
	if len(others) == 0 {
		return "", fmt.Errorf("no other etcd member answers")
	}
	moved := ""
	if p.leaderID == p.selfID && transferee.ID != 0 {
		c := *p.tls
		c.Endpoints = []string{p.endpoints[p.selfID]}
		if cli, err := clientv3.New(c); err == nil {
			mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if _, err := cli.MoveLeader(mctx, transferee.ID); err == nil {
				moved = transferee.Name
			}
			cancel()
			cli.Close()
		}
	}
	c := *p.tls
	c.Endpoints = others
	cli, err := clientv3.New(c)
	if err != nil {
		return moved, err
	}
	defer cli.Close()
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := cli.MemberRemove(rctx, p.selfID); err != nil {
		return moved, fmt.Errorf("remove etcd member %s: %w", p.memberName(), err)
	}
	return moved, nil
}
