package clusterkeys

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/peer"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/token"
)

// The cluster's shared keys travel sealed with the cluster secret, install
// once, and a node never takes another cluster's CA afterwards.
func TestSharedSealInstallPin(t *testing.T) {
	cfg := configtest.ControlPlane(t)
	shared, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := shared.Seal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, shared.Bundle.CAs[pki.CA].Key) || bytes.Contains(sealed, []byte("PRIVATE KEY")) {
		t.Fatal("the sealed keys contain a private key in the clear")
	}

	other := *cfg
	other.ClusterSecret = config.Secret("another-secret-0123456789abcdef0123456789")
	if _, err := Open(&other, sealed); !errors.Is(err, peer.ErrDecrypt) {
		t.Errorf("opened with another cluster secret: %v", err)
	}
	renamed := *cfg
	renamed.ClusterName = "other-shop"
	if _, err := Open(&renamed, sealed); !errors.Is(err, peer.ErrDecrypt) {
		t.Errorf("opened with another cluster name: %v", err)
	}

	got, err := Open(cfg, sealed)
	if err != nil {
		t.Fatal(err)
	}
	root := configtest.Root(t)
	for range 2 { // installing the same keys again changes nothing
		if err := got.Install(root, cfg); err != nil {
			t.Fatal(err)
		}
	}
	ca, _ := root.ReadFile(pki.CertPath(string(pki.CA)))
	if !bytes.Equal(ca, shared.Bundle.CAs[pki.CA].Cert) {
		t.Error("installed CA differs from the one sent")
	}
	enc, _ := root.ReadFile(bootstrap.EncryptionConfigFile)
	if key, err := bootstrap.EncryptionKey(enc); err != nil || !bytes.Equal(key, shared.EncryptionKey) {
		t.Errorf("encryption key not installed: %v", err)
	}
	if ok, _ := root.Exists(token.DefaultPinPath); !ok {
		t.Error("the CA was not pinned on first contact")
	}

	// Another cluster's keys: refused by the pin, nothing written.
	foreign, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = foreign.Install(root, cfg)
	if !errors.Is(err, token.ErrCAChanged) {
		t.Fatalf("installed another cluster's keys: %v", err)
	}
	if now, _ := root.ReadFile(pki.CertPath(string(pki.CA))); !bytes.Equal(now, ca) {
		t.Error("the CA on disk changed")
	}
	if !strings.Contains(err.Error(), "pinned") {
		t.Errorf("error does not say what is pinned: %v", err)
	}
}
