package nodestate

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/hostfs"
)

func testRoot(t *testing.T) *hostfs.Root {
	t.Helper()
	r, err := hostfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestStateKeepsNodeIDAndDecision(t *testing.T) {
	root := testRoot(t)
	s, err := LoadState(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uuid.Parse(s.NodeID); err != nil {
		t.Fatalf("new node ID %q: %v", s.NodeID, err)
	}
	s.Etcd = &EtcdDecision{State: bootstrap.EtcdStartNew, Token: "t", Peers: map[string]string{"cp-1": "https://10.0.0.1:2380"}}
	s.SetPhase(PhaseEtcdReady, time.Unix(100, 0))
	if err := s.Save(root); err != nil {
		t.Fatal(err)
	}
	fi, err := root.Stat(bootstrap.AgentStateFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}
	back, err := LoadState(root)
	if err != nil {
		t.Fatal(err)
	}
	if back.NodeID != s.NodeID || back.Phase != PhaseEtcdReady || back.Etcd.Membership().Peers["cp-1"] == "" {
		t.Fatalf("state did not survive: %+v", back)
	}
}

func TestCorruptStateIsAnError(t *testing.T) {
	root := testRoot(t)
	if _, err := root.WriteFile(bootstrap.AgentStateFile, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A fresh state would mean a fresh node ID and possibly a second
	// bootstrap; the agent refuses instead.
	if _, err := LoadState(root); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("got %v", err)
	}
}
