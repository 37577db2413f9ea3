package clusterkeys_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ecom-platform/ecom-agent/clusterkeys"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/peer"
)

// TestSealedForControlPlaneOnly: the shared keys open with the
// control-plane key; the cluster secret, which workers hold, opens
// nothing, and a worker cannot even try.
func TestSealedForControlPlaneOnly(t *testing.T) {
	cp := configtest.ControlPlane(t)
	shared, err := clusterkeys.New(cp)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := shared.Seal(cp)
	if err != nil {
		t.Fatal(err)
	}
	got, err := clusterkeys.Open(cp, sealed)
	if err != nil || !bytes.Equal(got.EncryptionKey, shared.EncryptionKey) {
		t.Fatalf("Open on a control-plane node: %v", err)
	}

	w := configtest.Worker(t)
	if _, err := clusterkeys.Open(w, sealed); err == nil || !strings.Contains(err.Error(), "no control-plane key") {
		t.Errorf("Open on a worker: %v", err)
	}
	// What a worker can derive from the cluster secret does not open it.
	byCluster := peer.NewBox(peer.DeriveKey(cp.Secret(), peer.PurposeCABundle, cp.ClusterName))
	if _, err := byCluster.Open(sealed, []byte("ecom-agent shared v1 "+cp.ClusterName)); err == nil {
		t.Error("the cluster secret opened the CA keys")
	}
	other := configtest.ControlPlane(t)
	other.ControlPlaneKey += "-other"
	if _, err := clusterkeys.Open(other, sealed); err == nil || !strings.Contains(err.Error(), "control_plane_key the same") {
		t.Errorf("Open with another control-plane key: %v", err)
	}
}

// TestLoadSealedMigrates: a file sealed with the cluster secret by an
// agent of before the control-plane key is sealed again with the key.
func TestLoadSealedMigrates(t *testing.T) {
	cp := configtest.ControlPlane(t)
	root := configtest.Root(t)
	shared, err := clusterkeys.New(cp)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json(shared)
	if err != nil {
		t.Fatal(err)
	}
	legacy := peer.NewBox(peer.DeriveKey(cp.Secret(), peer.PurposeCABundle, cp.ClusterName)).Seal(data, []byte("ecom-agent shared v1 "+cp.ClusterName))
	if err := clusterkeys.SaveSealed(root, legacy); err != nil {
		t.Fatal(err)
	}
	sealed, err := clusterkeys.LoadSealed(root, cp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clusterkeys.Open(cp, sealed); err != nil {
		t.Fatalf("the migrated keys: %v", err)
	}
	onDisk, err := root.ReadFile(clusterkeys.File)
	if err != nil || !bytes.Equal(onDisk, sealed) {
		t.Errorf("the file was not rewritten: %v", err)
	}
}
