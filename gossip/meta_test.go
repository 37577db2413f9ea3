package gossip

import (
	"math"
	"net/netip"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"

	"github.com/ecom-platform/ecom-agent/config"
)

// worstCaseMeta has every field at its largest.
func worstCaseMeta() Meta {
	return Meta{
		NodeID: "ffffffff-ffff-ffff-ffff-ffffffffffff",
		// The longest valid node name (not encoded: memberlist carries it).
		NodeName:      strings.Repeat(strings.Repeat("n", 63)+".", 3) + strings.Repeat("n", 61),
		Role:          config.RoleControlPlane,
		Expect:        maxExpect,
		EtcdClusterID: math.MaxUint64,
		HasEtcdData:   true,
		CommitID:      strings.Repeat("k", maxCommitLen),
		Phase:         strings.Repeat("p", maxPhaseLen),
		Version:       strings.Repeat("v", maxVersionLen),
		ClusterName:   strings.Repeat("c", maxClusterLen),
		RPCAddr:       netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535"),
		Counter:       math.MaxUint64,
		Leaving:       true,
	}
}

func TestMetaWorstCaseFits(t *testing.T) {
	b, err := encodeMeta(worstCaseMeta())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("worst case: %d bytes", len(b))
	if len(b) > memberlist.MetaMaxSize {
		t.Fatalf("worst-case metadata is %d bytes, memberlist allows %d", len(b), memberlist.MetaMaxSize)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{
		worstCaseMeta(),
		{NodeID: "2f1e3c6a-2b65-4bb4-9a52-0d6a3f1a8e01", NodeName: "w-1", Role: config.RoleWorker, ClusterName: "shop-prod", Counter: 1},
	} {
		b, err := encodeMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMeta(m.NodeName, b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if got != m {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", b, got, m)
		}
	}
}

func TestMetaDecodeIgnoresUnknownKeys(t *testing.T) {
	// As a newer agent might send it: a new key of each JSON kind.
	b := []byte(`{"i":"2f1e3c6a-2b65-4bb4-9a52-0d6a3f1a8e01","r":"control-plane","e":3,"c":42,"n":"shop-prod",` +
		`"a":"10.0.0.11:7947","g":7,"zz":"future","zn":1.5,"zo":{"x":[1,2]},"zb":true,"r2":null}`)
	m, err := decodeMeta("cp-1", b)
	if err != nil {
		t.Fatal(err)
	}
	want := Meta{NodeID: "2f1e3c6a-2b65-4bb4-9a52-0d6a3f1a8e01", NodeName: "cp-1", Role: config.RoleControlPlane,
		Expect: 3, EtcdClusterID: 42, ClusterName: "shop-prod", RPCAddr: netip.MustParseAddrPort("10.0.0.11:7947"), Counter: 7}
	if m != want {
		t.Errorf("decoded\n %+v\nwant %+v", m, want)
	}
}

func TestMetaDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, "no metadata"},
		{`not json`, "decode metadata"},
		{`{"i":"node-1","r":"worker","n":"x","g":1}`, "not a UUID"},
		{`{"i":"2f1e3c6a-2b65-4bb4-9a52-0d6a3f1a8e01","a":"10.0.0.1","g":1}`, "RPC address"},
		{`{"i":"2f1e3c6a-2b65-4bb4-9a52-0d6a3f1a8e01","c":-1}`, "decode metadata"},
	} {
		m, err := decodeMeta("cp-1", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("decode %q: err = %v, want %q", tc.in, err, tc.want)
		}
		if m.NodeName != "cp-1" {
			t.Errorf("decode %q: node name %q, want it kept", tc.in, m.NodeName)
		}
	}
}

func TestMetaEncodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Meta)
		want   string
	}{
		{func(m *Meta) { m.NodeID = "" }, "not a UUID"},
		{func(m *Meta) { m.NodeID = "{ffffffff-ffff-ffff-ffff-ffffffffffff}" }, "not a UUID"},
		{func(m *Meta) { m.Role = "etcd" }, `role "etcd"`},
		{func(m *Meta) { m.Expect = -1 }, "expect -1"},
		{func(m *Meta) { m.Expect = maxExpect + 1 }, "expect 1000"},
		{func(m *Meta) { m.Phase += "p" }, "longer than 32 bytes"},
		{func(m *Meta) { m.Version += "v" }, "longer than 64 bytes"},
		{func(m *Meta) { m.ClusterName += "c" }, "longer than 63 bytes"},
		{func(m *Meta) { m.Phase = `say "hi"` }, `has ' '`},
		{func(m *Meta) { m.Version = "v1<2" }, `has '<'`},
		{func(m *Meta) { m.RPCAddr = netip.MustParseAddrPort("[fe80::1%eth0]:7947") }, "has a zone"},
	} {
		m := worstCaseMeta()
		tc.mutate(&m)
		if _, err := encodeMeta(m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("encode %+v: err = %v, want %q", m, err, tc.want)
		}
	}
}

// A peer's name and free-text fields are claims: an invalid node name, or
// a phase or version with a terminal escape, makes its metadata unusable
// (it takes no part in decisions), and the error shows them quoted.
func TestMetaRefusesUnprintableClaims(t *testing.T) {
	good := Meta{NodeID: "2f1e3c6a-2b65-4bb4-9a52-0d6a3f1a8e01", NodeName: "w-1", Role: config.RoleWorker, ClusterName: "shop-prod", Phase: "api-ready"}
	b, err := encodeMeta(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeMeta("cp-1\x1b[2J", b); err == nil || strings.ContainsRune(err.Error(), 0x1b) {
		t.Errorf("a name with a terminal escape: %v", err)
	}
	bad := good
	bad.Phase = "api-ready\x1b]0;pwned\x07"
	if b, err = encodeMeta(bad); err == nil {
		if _, err := decodeMeta("w-1", b); err == nil || strings.ContainsRune(err.Error(), 0x1b) {
			t.Errorf("a phase with a terminal escape: %v", err)
		}
	}
}
