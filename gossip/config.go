package gossip

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultPort is the gossip port of join addresses that name none when
// Config.Port is 0.
const DefaultPort = 7946

// Config says how a node takes part in gossip. The agent fills it from its
// own configuration: node_name, cluster_name, cluster_secret,
// advertise_address, gossip.port and gossip.join (or --join).
type Config struct {
	// NodeName is the memberlist node name, unique in the cluster.
	NodeName string
	// ClusterName labels every packet and stream, so nodes drop traffic
	// of other clusters before trying to decrypt it.
	ClusterName string
	// Key is the gossip encryption key (AES-256): DeriveKey of the
	// cluster secret on a control-plane node, the key a worker was
	// given when it joined.
	Key Key
	// AdvertiseAddr is the address other nodes reach this one on.
	AdvertiseAddr netip.Addr
	// BindAddr is the address to listen on; the zero Addr means
	// AdvertiseAddr.
	BindAddr netip.Addr
	// Port is the TCP and UDP port to listen and advertise on. 0 lets the
	// system pick a free port (tests); see Gossip.Addr.
	Port int
	// Join lists the addresses ("host" or "host:port", IPv6 in brackets)
	// Run joins. A missing port means Port (DefaultPort if Port is 0).
	// The list may name this node itself, so every node can be given the
	// same list.
	Join []string
	// Meta is this node's initial metadata. New sets its NodeName,
	// ClusterName and Counter.
	Meta Meta
	// Fast selects timings for tests on loopback (failures detected in
	// about a second, retries in tens of milliseconds). Production uses
	// memberlist's LAN timings.
	Fast bool
	// Logger receives gossip's log and memberlist's, bridged. Nil
	// discards them.
	Logger *slog.Logger

	// tune, when set (tests), changes the chosen timings.
	tune func(*timing)
}

// timing holds the intervals that differ between production and tests.
type timing struct {
	// memberlist returns the base memberlist configuration.
	memberlist func() *memberlist.Config
	// joinBackoffMin and joinBackoffMax bound the wait between join
	// attempts while the node is alone.
	joinBackoffMin, joinBackoffMax time.Duration
	// rejoinInterval is how often Run contacts configured peers that are
	// not alive members, which heals partitions memberlist gave up on.
	rejoinInterval time.Duration
	// broadcastTimeout bounds waiting for a metadata update or a leave
	// message to go out.
	broadcastTimeout time.Duration
	// deadNodeReclaim is how long after a node was declared dead another
	// node may take over its name from a new address (a reinstalled host).
	// It is longer than a suspicion timeout, so a live node that was
	// wrongly declared dead refutes before anyone can take its name, and
	// shorter than memberlist's GossipToTheDeadTime, after which the
	// dead node is forgotten anyway.
	deadNodeReclaim time.Duration
}

func lanTiming() timing {
	return timing{
		memberlist:       memberlist.DefaultLANConfig,
		joinBackoffMin:   time.Second,
		joinBackoffMax:   30 * time.Second,
		rejoinInterval:   30 * time.Second,
		broadcastTimeout: 5 * time.Second,
		deadNodeReclaim:  10 * time.Second,
	}
}

func fastTiming() timing {
	return timing{
		memberlist: func() *memberlist.Config {
			c := memberlist.DefaultLocalConfig()
			c.ProbeInterval = 200 * time.Millisecond
			c.ProbeTimeout = 100 * time.Millisecond
			c.GossipInterval = 20 * time.Millisecond
			c.PushPullInterval = time.Second
			c.GossipToTheDeadTime = 5 * time.Second
			return c
		},
		joinBackoffMin:   20 * time.Millisecond,
		joinBackoffMax:   300 * time.Millisecond,
		rejoinInterval:   500 * time.Millisecond,
		broadcastTimeout: time.Second,
		deadNodeReclaim:  500 * time.Millisecond,
	}
}

func (c *Config) timing() timing {
	t := lanTiming()
	if c.Fast {
		t = fastTiming()
	}
	if c.tune != nil {
		c.tune(&t)
	}
	return t
}

// check reports the first problem with c.
func (c *Config) check() error {
	switch {
	case c.NodeName == "":
		return errors.New("node name is empty")
	case c.ClusterName == "":
		return errors.New("cluster name is empty")
	case len(c.ClusterName) > memberlist.LabelMaxSize:
		return fmt.Errorf("cluster name is longer than %d bytes", memberlist.LabelMaxSize)
	case len(c.Key) != keySize:
		// Unencrypted gossip would let anyone on the network join.
		return fmt.Errorf("the gossip key is %d bytes, not %d", len(c.Key), keySize)
	case !c.AdvertiseAddr.IsValid():
		return errors.New("advertise address is not set")
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("port %d is out of range", c.Port)
	}
	return nil
}

// joinPort is the port of join addresses that name none.
func (c *Config) joinPort() int {
	if c.Port == 0 {
		return DefaultPort
	}
	return c.Port
}

// memberlistConfig builds memberlist's configuration around our delegates.
// tr is the transport, already listening: memberlist's BindAddr and
// BindPort only serve its own transport and are left alone.
func (c *Config) memberlistConfig(t timing, key []byte, logger *log.Logger, meta memberlist.Delegate, tbl *table, tr *transport) (*memberlist.Config, error) {
	keyring, err := memberlist.NewKeyring(nil, key)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	mc := t.memberlist()
	mc.Name = c.NodeName
	mc.Label = c.ClusterName
	mc.Keyring = keyring
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	mc.Transport = tr
	mc.AdvertiseAddr = c.AdvertiseAddr.String()
	mc.AdvertisePort = tr.port
	// Compression (LZW) makes a fresh 64 KiB table for every packet sent
	// and lets no more messages into a packet (memberlist fills packets
	// before compressing them): on a LAN it costs every node CPU and
	// garbage to save bytes that are cheap.
	mc.EnableCompression = false
	mc.DeadNodeReclaimTime = t.deadNodeReclaim
	mc.Logger = logger
	mc.LogOutput = nil
	mc.Delegate = meta
	mc.Events = tbl
	mc.Conflict = tbl
	mc.Ping = tbl
	return mc, nil
}

// bindAddr is the address gossip listens on: BindAddr, or AdvertiseAddr
// when BindAddr is not set.
func (c *Config) bindAddr() netip.Addr {
	if c.BindAddr.IsValid() {
		return c.BindAddr
	}
	return c.AdvertiseAddr
}
