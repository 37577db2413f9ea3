package peer

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func TestDeriveKeyIsStable(t *testing.T) {
	// A change here changes every cluster's key: old and new agents
	// would no longer talk. Only change it with a new purpose version.
	key := DeriveKey([]byte(testSecret), PurposePeerRPC, "prod")
	const want = "41be3aec378768396964f148e87c7287b124a97e6fbf622c88291a53fa21eb1b"
	if got := hex.EncodeToString(key[:]); got != want {
		t.Errorf("DeriveKey(peer-rpc, prod) = %s, want %s", got, want)
	}
}

func TestDeriveKeySeparatesPurposesAndClusters(t *testing.T) {
	keys := map[[KeySize]byte]string{}
	for _, c := range []struct{ secret, purpose, cluster string }{
		{testSecret, PurposePeerRPC, "prod"},
		{testSecret, PurposeCABundle, "prod"},
		{testSecret, PurposePeerRPC, "staging"},
		{testSecret, PurposePeerRPC, "prod\x00"},
		{testSecret, "ecom-agent gossip v1", ""},
		{testSecret + "x", PurposePeerRPC, "prod"},
	} {
		k := DeriveKey([]byte(c.secret), c.purpose, c.cluster)
		if prev, dup := keys[k]; dup {
			t.Errorf("%q and %+v derive the same key", prev, c)
		}
		keys[k] = c.purpose + "/" + c.cluster
	}
}

func TestBox(t *testing.T) {
	box := NewBox(DeriveKey([]byte(testSecret), PurposeCABundle, "prod"))
	plain := []byte("-----BEGIN PRIVATE KEY-----\nca key\n")
	aad := []byte("ca-bundle for node-b")

	sealed := box.Seal(plain, aad)
	if bytes.Contains(sealed, plain[:20]) {
		t.Fatal("sealed message contains the plaintext")
	}
	if len(sealed) != len(plain)+box.Overhead() {
		t.Errorf("sealed %d bytes into %d, want overhead %d", len(plain), len(sealed), box.Overhead())
	}
	if again := box.Seal(plain, aad); bytes.Equal(again, sealed) {
		t.Error("two seals of the same message are equal; nonces are not fresh")
	}
	got, err := box.Open(sealed, aad)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Open = %q, %v; want the plaintext", got, err)
	}

	other := NewBox(DeriveKey([]byte(testSecret), PurposeCABundle, "staging"))
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)/2] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"other key":    func() ([]byte, error) { return other.Open(sealed, aad) },
		"other aad":    func() ([]byte, error) { return box.Open(sealed, []byte("ca-bundle for node-c")) },
		"altered":      func() ([]byte, error) { return box.Open(flipped, aad) },
		"truncated":    func() ([]byte, error) { return box.Open(sealed[:10], aad) },
		"other format": func() ([]byte, error) { return box.Open(append([]byte{9}, sealed[1:]...), aad) },
	} {
		if got, err := open(); !errors.Is(err, ErrDecrypt) || got != nil {
			t.Errorf("%s: Open = %q, %v; want ErrDecrypt", name, got, err)
		}
	}
}
