package agent

import (
	"strings"
	"testing"
)

func TestJudgeCertificates(t *testing.T) {
	for _, c := range []struct {
		sum     CertSummary
		verdict string
		reason  string
	}{
		{CertSummary{Count: 20, Nearest: "apiserver"}, Healthy, ""},
		{CertSummary{Count: 20, Due: 2, Nearest: "apiserver"}, Degraded, "2 certificate(s) inside the renewal window, the first apiserver"},
		{CertSummary{Count: 20, Expired: 1, Nearest: "etcd/peer"}, Down, "1 certificate(s) expired"},
		{CertSummary{Count: 20, CAExpiresSoon: []string{"etcd/ca"}}, Degraded, "CA etcd/ca expires within a year"},
	} {
		s := Status{Certificates: &c.sum}
		s.judge(false)
		if s.Verdict != c.verdict || (c.reason != "" && (len(s.Reasons) == 0 || !strings.Contains(s.Reasons[0], c.reason))) {
			t.Errorf("%+v: %s %v, want %s with %q", c.sum, s.Verdict, s.Reasons, c.verdict, c.reason)
		}
	}
}
