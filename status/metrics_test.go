package status

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/nodestate"
)

func TestMetricsFollowTheStatus(t *testing.T) {
	st := Status{
		Node: Node{Name: "cp-1", Role: "control-plane", Cluster: "shop", Version: "1.0"}, Verdict: Degraded, Phase: nodestate.PhaseAPIReady,
		Etcd:         &EtcdStatus{Leader: "cp-2", DBSize: 4096, Members: []EtcdMember{{Started: true}, {Started: true}, {Started: true, Learner: true}, {}}},
		ControlPlane: &ControlPlaneStatus{Ready: true},
		Seed:         &SeedStatus{Leader: true, Counts: map[string]int{"created": 70, "skipped": 1}},
		Platform:     &PlatformStatus{Workloads: 10, Ready: 3, Overdue: true},
		Certificates: &CertSummary{Count: 25, Due: 1, Nearest: "etcd/peer", NearestNotAfter: time.Unix(1900000000, 0),
			Expiries: []CertExpiry{{Name: "apiserver", NotAfter: time.Now().Add(-time.Hour)}}},
		JoinSeconds:       41.5,
		MembershipChanges: map[string]int{"add-learner": 1, "promote": 1},
	}
	rec := httptest.NewRecorder()
	MetricsHandler(func() Status { return st }).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`ecom_agent_info{cluster="shop",node="cp-1",role="control-plane",version="1.0"} 1`,
		"ecom_agent_verdict 1",
		`ecom_agent_phase{phase="api-ready"} 1`,
		`ecom_agent_etcd_members{kind="voter"} 2`,
		`ecom_agent_etcd_members{kind="learner"} 1`,
		`ecom_agent_etcd_members{kind="unstarted"} 1`,
		"ecom_agent_etcd_has_leader 1",
		"ecom_agent_apiserver_ready 1",
		`ecom_agent_seed_objects{result="created"} 70`,
		"ecom_agent_seed_leader 1",
		`ecom_agent_platform_workloads{state="ready"} 3`,
		`ecom_agent_platform_workloads{state="not_ready"} 7`,
		"ecom_agent_platform_overdue 1",
		`ecom_agent_certificate_expiry_timestamp_seconds{name="etcd/peer"} 1.9e+09`,
		`ecom_agent_certificates{state="due"} 1`,
		`ecom_agent_certificate_expiry_seconds{name="apiserver"} -3`,
		"ecom_agent_join_duration_seconds 41.5",
		`ecom_agent_etcd_membership_changes_total{action="add-learner"} 1`,
		`ecom_agent_etcd_membership_changes_total{action="remove"} 0`,
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// /healthz is the agent's liveness (its loops make progress); /readyz the
// node's verdict, with the reasons.
func TestHealthEndpoints(t *testing.T) {
	st := Status{Verdict: Degraded, Reasons: []string{"etcd member cp-2 (b2) does not answer"}}
	beat := time.Now()
	healthz, readyz := healthHandlers(func() Status { return st }, func() time.Time { return beat })
	get := func(h http.Handler) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(healthz); code != 200 || body != "ok\n" {
		t.Errorf("/healthz of a live agent: %d %q", code, body)
	}
	if code, body := get(readyz); code != 503 || !strings.Contains(body, "degraded\n- etcd member cp-2 (b2) does not answer") {
		t.Errorf("/readyz of a degraded node: %d %q", code, body)
	}
	st = Status{Verdict: Healthy}
	if code, body := get(readyz); code != 200 || body != "healthy\n" {
		t.Errorf("/readyz of a healthy node: %d %q", code, body)
	}
	beat = time.Now().Add(-2 * stuckAfter)
	if code, body := get(healthz); code != 503 || !strings.Contains(body, "stuck: no progress for 2m") {
		t.Errorf("/healthz of a stuck agent: %d %q", code, body)
	}
}
