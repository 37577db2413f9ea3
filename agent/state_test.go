package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/units"
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
	s.Etcd = &EtcdDecision{State: "new", Token: "t", Peers: map[string]string{"cp-1": "https://10.0.0.1:2380"}}
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

func TestJudge(t *testing.T) {
	active := UnitReport{UnitStatus: units.UnitStatus{Name: "etcd.service", ActiveState: "active", SubState: "running"}}
	failed := UnitReport{UnitStatus: units.UnitStatus{Name: "etcd.service", ActiveState: "failed", SubState: "failed", Result: "exit-code", NRestarts: 3}}
	healthyEtcd := &EtcdStatus{Leader: "cp-1", Members: []EtcdMember{{Name: "cp-1", Started: true, Leader: true, Healthy: true}}}
	for _, tc := range []struct {
		name    string
		s       Status
		etcd    bool
		verdict string
		reason  string
	}{
		{"all good", Status{Units: []UnitReport{active}, Etcd: healthyEtcd}, true, Healthy, ""},
		{"failed unit", Status{Units: []UnitReport{failed}, Etcd: healthyEtcd}, true, Down, "etcd.service is failed (exit-code), restarted 3 times"},
		{"etcd silent", Status{Units: []UnitReport{active}, EtcdError: "context deadline exceeded"}, true, Down, "etcd is not answering"},
		{"no leader", Status{Units: []UnitReport{active}, Etcd: &EtcdStatus{Members: []EtcdMember{{Started: true}}}}, true, Down, "no leader"},
		{"waiting", Status{Waiting: "3 control-plane nodes"}, false, Degraded, "waiting: 3 control-plane nodes"},
		{"learner not started", Status{Units: []UnitReport{active}, Etcd: &EtcdStatus{Leader: "cp-1", Members: []EtcdMember{{Started: true, Healthy: true}, {ID: "abc"}}}}, true, Degraded, "abc added but not started"},
		{"a member down", Status{Units: []UnitReport{active}, Etcd: &EtcdStatus{Leader: "cp-1", Members: []EtcdMember{{Name: "cp-1", Started: true, Healthy: true}, {Name: "cp-2", ID: "b2", Started: true, Error: "context deadline exceeded"}}}}, true, Degraded, "etcd member cp-2 (b2) does not answer: context deadline exceeded"},
		{"another API server not ready", Status{Node: Node{Name: "cp-1"}, ControlPlane: &ControlPlaneStatus{Ready: true}, APIServers: []APIServerHealth{{Node: "cp-1", Ready: true}, {Node: "cp-2", URL: "https://10.0.0.2:6443", Error: "/readyz: connection refused"}}}, false, Degraded, "kube-apiserver on cp-2 (https://10.0.0.2:6443) is not ready: /readyz: connection refused"},
		{"the local API server judged by its own probe", Status{Node: Node{Name: "cp-1"}, ControlPlane: &ControlPlaneStatus{Ready: true}, APIServers: []APIServerHealth{{Node: "cp-1", Error: "stale"}}}, false, Healthy, ""},
		{"the local API server without the daemon", Status{Node: Node{Name: "cp-1"}, APIServers: []APIServerHealth{{Node: "cp-1", URL: "https://10.0.0.1:6443", Error: "refused"}}}, false, Degraded, "kube-apiserver on cp-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.judge(tc.etcd)
			if tc.s.Verdict != tc.verdict {
				t.Errorf("verdict %s, want %s (reasons %v)", tc.s.Verdict, tc.verdict, tc.s.Reasons)
			}
			if tc.reason != "" && (len(tc.s.Reasons) == 0 || !strings.Contains(tc.s.Reasons[0], tc.reason)) {
				t.Errorf("reasons %v, want the first to mention %q", tc.s.Reasons, tc.reason)
			}
		})
	}
}
