package bootstrap

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
)

// EtcdMembership is what the quorum phase decides: who is in the cluster
// this member starts or joins. The zero value renders a config without
// membership, which etcd refuses to start from; that is deliberate: only
// the quorum phase may fill it in.
type EtcdMembership struct {
	// State is EtcdStartNew for a member of the founding set,
	// EtcdStartExisting for one that joins a running cluster or starts
	// from its data.
	State EtcdStart
	// Token is the initial-cluster-token, fresh for every cluster.
	Token string
	// Peers maps member name to peer URL, this node included.
	Peers map[string]string
}

// EtcdStart is etcd's initial-cluster-state: how a member starts.
type EtcdStart string

// The ways an etcd member starts.
const (
	// EtcdStartNew founds a cluster with exactly the decided members.
	EtcdStartNew EtcdStart = "new"
	// EtcdStartExisting joins a running cluster (or starts from data,
	// when etcd ignores the initial membership).
	EtcdStartExisting EtcdStart = "existing"
)

// etcdConfig mirrors the keys of etcd's YAML config file (embed.Config's
// JSON tags). Only what the agent sets is listed; etcd's loader fills in
// the rest from its defaults.
type etcdConfig struct {
	Name                     string   `json:"name"`
	DataDir                  string   `json:"data-dir"`
	ListenClientURLs         string   `json:"listen-client-urls"`
	AdvertiseClientURLs      string   `json:"advertise-client-urls"`
	ListenPeerURLs           string   `json:"listen-peer-urls"`
	InitialAdvertisePeerURLs string   `json:"initial-advertise-peer-urls"`
	ListenMetricsURLs        string   `json:"listen-metrics-urls"`
	InitialCluster           string   `json:"initial-cluster,omitempty"`
	InitialClusterState      string   `json:"initial-cluster-state,omitempty"`
	InitialClusterToken      string   `json:"initial-cluster-token,omitempty"`
	ClientTransportSecurity  etcdTLS  `json:"client-transport-security"`
	PeerTransportSecurity    etcdTLS  `json:"peer-transport-security"`
	SnapshotCount            uint64   `json:"snapshot-count"`
	QuotaBackendBytes        int64    `json:"quota-backend-bytes"`
	AutoCompactionMode       string   `json:"auto-compaction-mode"`
	AutoCompactionRetention  string   `json:"auto-compaction-retention"`
	StrictReconfigCheck      bool     `json:"strict-reconfig-check"`
	PreVote                  bool     `json:"pre-vote"`
	Logger                   string   `json:"logger"`
	LogOutputs               []string `json:"log-outputs"`
	CipherSuites             []string `json:"cipher-suites"`
	TLSMinVersion            string   `json:"tls-min-version"`
}

type etcdTLS struct {
	CertFile       string `json:"cert-file"`
	KeyFile        string `json:"key-file"`
	TrustedCAFile  string `json:"trusted-ca-file"`
	ClientCertAuth bool   `json:"client-cert-auth"`
}

// EtcdClientURL is the URL clients on this node use to reach etcd.
func EtcdClientURL(addr netip.Addr, port int) string {
	return "https://" + netip.AddrPortFrom(addr, uint16(port)).String()
}

// EtcdPeerURL is the URL other members reach this member's peer port on.
func EtcdPeerURL(addr netip.Addr, port int) string {
	return "https://" + netip.AddrPortFrom(addr, uint16(port)).String()
}

// EtcdConfig builds the YAML config of the local etcd member.
func EtcdConfig(cfg *config.Config, m EtcdMembership) ([]byte, error) {
	if m.State != "" && m.State != EtcdStartNew && m.State != EtcdStartExisting {
		return nil, fmt.Errorf("etcd membership state %q: want new or existing", m.State)
	}
	loopback := netip.MustParseAddr("127.0.0.1")
	self := EtcdClientURL(cfg.AdvertiseAddress, cfg.Etcd.ClientPort)
	c := etcdConfig{
		Name:                     cfg.NodeName,
		DataDir:                  EtcdDataDir,
		ListenClientURLs:         listenClientURLs(loopback, cfg),
		AdvertiseClientURLs:      self,
		ListenPeerURLs:           EtcdPeerURL(cfg.AdvertiseAddress, cfg.Etcd.PeerPort),
		InitialAdvertisePeerURLs: EtcdPeerURL(cfg.AdvertiseAddress, cfg.Etcd.PeerPort),
		// Metrics and /health over plain HTTP on loopback only, as kubeadm
		// does, so probes need no client certificate.
		ListenMetricsURLs: "http://127.0.0.1:2381",
		ClientTransportSecurity: etcdTLS{
			CertFile:       pkiPath("etcd/server.crt"),
			KeyFile:        pkiPath("etcd/server.key"),
			TrustedCAFile:  pkiPath("etcd/ca.crt"),
			ClientCertAuth: true,
		},
		PeerTransportSecurity: etcdTLS{
			CertFile:       pkiPath("etcd/peer.crt"),
			KeyFile:        pkiPath("etcd/peer.key"),
			TrustedCAFile:  pkiPath("etcd/ca.crt"),
			ClientCertAuth: true,
		},
		SnapshotCount:           10000,
		QuotaBackendBytes:       8 << 30,
		AutoCompactionMode:      "periodic",
		AutoCompactionRetention: "1h",
		StrictReconfigCheck:     true,
		PreVote:                 true,
		Logger:                  "zap",
		LogOutputs:              []string{"stderr"},
		CipherSuites:            TLSCipherSuites,
		TLSMinVersion:           "TLS1.2",
	}
	if len(m.Peers) > 0 {
		if _, ok := m.Peers[cfg.NodeName]; !ok {
			return nil, fmt.Errorf("etcd membership does not list this node %q", cfg.NodeName)
		}
		// A member joining a running cluster learns it from its peers;
		// only a founding member needs the cluster token.
		if m.State == "" || (m.State == EtcdStartNew && m.Token == "") {
			return nil, fmt.Errorf("etcd membership needs a state, and a token for a new cluster")
		}
		var parts []string
		for _, n := range sortedKeys(m.Peers) {
			if _, err := url.Parse(m.Peers[n]); err != nil {
				return nil, fmt.Errorf("etcd peer %s: %w", n, err)
			}
			parts = append(parts, n+"="+m.Peers[n])
		}
		c.InitialCluster = strings.Join(parts, ",")
		c.InitialClusterState = string(m.State)
		c.InitialClusterToken = m.Token
	}
	// Operator extra flags override the agent's tunables (never the keys
	// it owns: config validation refuses those), so the file is built as
	// one map to keep every key unique.
	doc, err := toMap(c)
	if err != nil {
		return nil, fmt.Errorf("etcd config: %w", err)
	}
	for k, v := range cfg.Etcd.ExtraFlags {
		doc[k] = etcdValue(v)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("etcd config: %w", err)
	}
	return append([]byte(generatedHeader("#")), out...), nil
}

// etcdValue types an extra flag's value the way etcd's YAML expects:
// booleans and integers unquoted, everything else a string.
func etcdValue(v string) any {
	if v == "true" || v == "false" {
		return v == "true"
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n
	}
	return v
}

// ClientURLs derives the members' client URLs from their peer URLs: every
// member listens for clients on the same host as for peers.
func (m EtcdMembership) ClientURLs(port int) []string {
	var out []string
	for _, name := range sortedKeys(m.Peers) {
		u, err := url.Parse(m.Peers[name])
		if err != nil || u.Hostname() == "" {
			continue
		}
		out = append(out, "https://"+net.JoinHostPort(u.Hostname(), strconv.Itoa(port)))
	}
	return out
}

// listenClientURLs has etcd serve clients on loopback (for the local API
// server and health checks) and on the advertise address (for peers' API
// servers), once when they are the same.
func listenClientURLs(loopback netip.Addr, cfg *config.Config) string {
	self := EtcdClientURL(cfg.AdvertiseAddress, cfg.Etcd.ClientPort)
	// Local clients use 127.0.0.1; only a node advertising exactly that
	// (tests) must not listen on it twice.
	if cfg.AdvertiseAddress == loopback {
		return self
	}
	return EtcdClientURL(loopback, cfg.Etcd.ClientPort) + "," + self
}

// EtcdConfigUnder rewrites the absolute host paths of a rendered etcd
// config (certificates, data directory) to the same paths under root, so
// the etcd of a tree rendered with `render --root DIR` (or a test's) runs
// from that tree. Nothing else in the file changes.
func EtcdConfigUnder(root *hostfs.Root, data []byte) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("etcd config: %w", err)
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case string:
			if strings.HasPrefix(x, KubernetesDir+"/") || strings.HasPrefix(x, EtcdDataDir) {
				return root.Path(x)
			}
		case map[string]any:
			for k, e := range x {
				x[k] = walk(e)
			}
		}
		return v
	}
	walk(doc)
	return yaml.Marshal(doc)
}
