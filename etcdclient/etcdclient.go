// Package etcdclient is the agent's client of the local etcd member:
// mutual TLS with the healthcheck client certificate, the cluster's state
// as status shows it, and the member list as the reconciler reads it.
package etcdclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/status"
)

// ClientTLS is the mutual TLS config of the agent's etcd client: the
// healthcheck client certificate, trusting only the etcd CA.
func ClientTLS(root *hostfs.Root) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(root.Path(pki.CertPath("etcd/healthcheck-client")), root.Path(pki.KeyPath("etcd/healthcheck-client")))
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate: %w", err)
	}
	caPEM, err := root.ReadFile(pki.CertPath(string(pki.EtcdCA)))
	if err != nil {
		return nil, fmt.Errorf("etcd CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("etcd CA %s holds no certificate", pki.CertPath(string(pki.EtcdCA)))
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Local connects to the etcd member on this node.
func Local(root *hostfs.Root, cfg *config.Config) (*clientv3.Client, error) {
	tlsCfg, err := ClientTLS(root)
	if err != nil {
		return nil, err
	}
	endpoint := bootstrap.EtcdClientURL(netip.MustParseAddr("127.0.0.1"), cfg.Etcd.ClientPort)
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		TLS:         tlsCfg,
		DialTimeout: 3 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// Shared is the daemon's long-lived client of the local etcd member.
// The reconciler reads etcd every 2 s on every node; a new client each
// time cost a TLS handshake and a key-pair parse per turn, a third of
// the agent's idle CPU. It is made again when the client certificate
// changes (renewal); gRPC reconnects it when etcd restarts.
type Shared struct {
	mu    sync.Mutex
	cli   *clientv3.Client
	stamp time.Time
}

// Get returns the shared client, making it if needed.
func (s *Shared) Get(root *hostfs.Root, cfg *config.Config) (*clientv3.Client, error) {
	fi, err := root.Stat(pki.CertPath("etcd/healthcheck-client"))
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cli != nil && fi.ModTime().Equal(s.stamp) {
		return s.cli, nil
	}
	if s.cli != nil {
		s.cli.Close()
		s.cli = nil
	}
	cli, err := Local(root, cfg)
	if err != nil {
		return nil, err
	}
	s.cli, s.stamp = cli, fi.ModTime()
	return cli, nil
}

// Close closes the shared client.
func (s *Shared) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cli != nil {
		s.cli.Close()
		s.cli = nil
	}
}

// Status asks the local member for the cluster's state.
func Status(ctx context.Context, cli *clientv3.Client) (status.EtcdStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ep := cli.Endpoints()[0]
	st, err := cli.Status(ctx, ep)
	if err != nil {
		return status.EtcdStatus{}, fmt.Errorf("etcd status: %w", err)
	}
	// Serializable: the local member's view, which it serves without
	// quorum, so a member waiting for its peers after a power cut still
	// answers (and shows who it waits for).
	ml, err := cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return status.EtcdStatus{}, fmt.Errorf("etcd member list: %w", err)
	}
	out := status.EtcdStatus{
		ClusterID: HexID(st.Header.ClusterId),
		RaftIndex: st.RaftIndex,
		RaftTerm:  st.RaftTerm,
		DBSize:    st.DbSize,
	}
	for _, m := range ml.Members {
		em := status.EtcdMember{
			ID: HexID(m.ID), Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs,
			Learner: m.IsLearner, Leader: m.ID == st.Leader, Started: m.Name != "",
		}
		if em.Leader {
			out.Leader = m.Name
		}
		out.Members = append(out.Members, em)
	}
	urls := make([]string, len(ml.Members))
	for i, m := range ml.Members {
		if len(m.ClientURLs) > 0 {
			urls[i] = m.ClientURLs[0]
		}
	}
	answers, errs := ProbeMembers(ctx, cli, urls)
	for i, a := range answers {
		em := &out.Members[i]
		switch {
		case urls[i] == "":
			em.Error = "not started"
		case errs[i] != nil:
			em.Error = errs[i].Error()
		default:
			em.Healthy, em.DBSize, em.RaftIndex, em.RaftTerm = true, a.DbSize, a.RaftIndex, a.RaftTerm
			if len(a.Errors) > 0 {
				em.Healthy, em.Error = false, strings.Join(a.Errors, "; ")
			}
		}
	}
	return out, nil
}

// ProbeMembers asks every member on its own client URL ("" for one that
// has not started: not asked) for its status, all at once, so one that
// hangs costs two seconds, not two per member. An answer is nil where
// the member did not answer, with the reason in errs.
func ProbeMembers(ctx context.Context, cli *clientv3.Client, urls []string) ([]*clientv3.StatusResponse, []error) {
	answers := make([]*clientv3.StatusResponse, len(urls))
	errs := make([]error, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		if u == "" {
			errs[i] = errors.New("not started")
			continue
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			answers[i], errs[i] = cli.Status(pctx, u)
		})
	}
	wg.Wait()
	return answers, errs
}

// HexID formats an etcd member or cluster ID as etcdctl does.
func HexID(id uint64) string { return strconv.FormatUint(id, 16) }
