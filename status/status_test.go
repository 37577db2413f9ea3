package status

import (
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/units"
)

func TestJudgeCertificates(t *testing.T) {
	for _, c := range []struct {
		sum     CertSummary
		verdict Verdict
		reason  string
	}{
		{CertSummary{Count: 20, Nearest: "apiserver"}, Healthy, ""},
		{CertSummary{Count: 20, Due: 2, Nearest: "apiserver"}, Degraded, "2 certificate(s) inside the renewal window, the first apiserver"},
		{CertSummary{Count: 20, Expired: 1, Nearest: "etcd/peer"}, Down, "1 certificate(s) expired"},
		{CertSummary{Count: 20, CAExpiresSoon: []string{"etcd/ca"}}, Degraded, "CA etcd/ca expires within a year"},
	} {
		s := Status{Certificates: &c.sum}
		s.Judge(false)
		if s.Verdict != c.verdict || (c.reason != "" && (len(s.Reasons) == 0 || !strings.Contains(s.Reasons[0], c.reason))) {
			t.Errorf("%+v: %s %v, want %s with %q", c.sum, s.Verdict, s.Reasons, c.verdict, c.reason)
		}
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
		verdict Verdict
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
		{"an image archive that did not import", Status{Kubelet: &NodeStatus{KubeletStarted: true, Ready: true, ImageErrors: []string{"/var/lib/ecom-agent/images/shop.tar did not import into containerd: unexpected EOF"}}}, false, Degraded, "image archive: /var/lib/ecom-agent/images/shop.tar did not import"},
		{"the platform not ready within the grace", Status{Platform: &PlatformStatus{Workloads: 9, Ready: 5, NotReady: []PlatformProblem{{"Deployment ecommerce/backend", "pod backend-1: ImagePullBackOff"}}}}, false, Healthy, ""},
		{"the platform not ready past the grace", Status{Platform: &PlatformStatus{Workloads: 9, Ready: 5, Overdue: true, NotReadySince: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC), NotReady: []PlatformProblem{{"Deployment ecommerce/backend", "pod backend-1: ImagePullBackOff"}}}}, false, Degraded,
			"platform: 4 of 9 seeded workload(s) not available since 2026-12-05T10:00:00Z, the first Deployment ecommerce/backend: pod backend-1: ImagePullBackOff"},
		{"a recent etcd snapshot", Status{EtcdSnapshots: &SnapshotStatus{IntervalSeconds: 3600, Last: &SnapshotInfo{Name: "s.db"}}}, false, Healthy, ""},
		{"an overdue etcd snapshot", Status{EtcdSnapshots: &SnapshotStatus{Dir: "/var/lib/ecom-agent/snapshots", IntervalSeconds: 3600, Overdue: true, Error: "no space left on device",
			Last: &SnapshotInfo{Name: "s.db", Taken: time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)}}}, false, Degraded,
			"etcd snapshots: the last one (s.db) is from 2026-12-05T10:00:00Z, older than twice the interval (2h0m0s); the last attempt failed: no space left on device"},
		{"no etcd snapshot yet, overdue", Status{EtcdSnapshots: &SnapshotStatus{Dir: "/snaps", IntervalSeconds: 3600, Overdue: true}}, false, Degraded,
			"etcd snapshots: none in /snaps younger than twice the interval (2h0m0s)"},
		{"the local API server without the daemon", Status{Node: Node{Name: "cp-1"}, APIServers: []APIServerHealth{{Node: "cp-1", URL: "https://10.0.0.1:6443", Error: "refused"}}}, false, Degraded, "kube-apiserver on cp-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.Judge(tc.etcd)
			if tc.s.Verdict != tc.verdict {
				t.Errorf("verdict %s, want %s (reasons %v)", tc.s.Verdict, tc.verdict, tc.s.Reasons)
			}
			if tc.reason != "" && (len(tc.s.Reasons) == 0 || !strings.Contains(tc.s.Reasons[0], tc.reason)) {
				t.Errorf("reasons %v, want the first to mention %q", tc.s.Reasons, tc.reason)
			}
		})
	}
}
