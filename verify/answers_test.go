package verify

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func TestCorefileDomain(t *testing.T) {
	for corefile, want := range map[string]string{
		".:53 {\n    errors\n    kubernetes shop.internal in-addr.arpa ip6.arpa {\n      pods insecure\n    }\n}\n": "shop.internal",
		".:53 {\n  kubernetes cluster.local. in-addr.arpa {\n  }\n}":                                                "cluster.local",
		".:53 {\n  # kubernetes commented.out\n  kubernetes {\n  }\n}":                                              DefaultClusterDomain,
		"": DefaultClusterDomain,
	} {
		if got := corefileDomain(corefile); got != want {
			t.Errorf("%q: %q, want %q", corefile, got, want)
		}
	}
}

func TestDNSProblem(t *testing.T) {
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	const name = "kubernetes.default.svc.cluster.local"
	for _, tc := range []struct {
		got  []netip.Addr
		want []string
		prob string
	}{
		{addrs("10.96.0.1"), []string{"10.96.0.1"}, ""},
		{addrs("::ffff:10.96.0.1"), []string{"10.96.0.1"}, ""},
		{addrs("fd00::1", "10.96.0.1"), []string{"10.96.0.1", "fd00::1"}, ""},
		{addrs("10.96.0.7"), []string{"10.96.0.1"}, name + " resolved to 10.96.0.7, want 10.96.0.1 (the kubernetes Service's cluster IP)"},
		{nil, []string{"10.96.0.1"}, name + " resolved to no address, want 10.96.0.1"},
	} {
		if got := dnsProblem(name, tc.got, tc.want); got != tc.prob {
			t.Errorf("%v: %q, want %q", tc.got, got, tc.prob)
		}
	}
}

// dnsServer answers A queries for names on a UDP port of 127.0.0.1 and
// returns its address.
func dnsServer(t *testing.T, names map[string]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.EnableCompression()
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			if ip, ok := names[q.Name.String()]; ok && q.Type == dnsmessage.TypeA {
				_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5},
					dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()})
			}
			msg, err := b.Finish()
			if err == nil {
				_, _ = pc.WriteTo(msg, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// resolve asks the one server it is given, never the host's resolvers.
func TestResolveAsksTheServerGiven(t *testing.T) {
	server := dnsServer(t, map[string]string{"kubernetes.default.svc.shop.internal.": "10.96.0.1"})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got, err := resolve(ctx, server, "kubernetes.default.svc.shop.internal")
	if err != nil {
		t.Fatal(err)
	}
	if p := dnsProblem("kubernetes.default.svc.shop.internal", got, []string{"10.96.0.1"}); p != "" {
		t.Error(p)
	}
	// A server that does not answer: the context bounds the wait.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = resolve(ctx, pc.LocalAddr().String(), "kubernetes.default.svc.cluster.local")
	if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("a silent server: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the wait took %s, past its context", d)
	}
}

func TestAPIServiceAndNodeMetrics(t *testing.T) {
	var a apiService
	if p := apiServiceProblem(a); p != "no Available condition yet" {
		t.Errorf("no conditions: %q", p)
	}
	a.Status.Conditions = append(a.Status.Conditions, apiServiceCondition{"Available", "False", "FailedDiscoveryCheck", "failing or missing response from https://10.96.0.200:443/apis/metrics.k8s.io/v1beta1: context deadline exceeded"})
	if p := apiServiceProblem(a); p != "Available=False: FailedDiscoveryCheck: failing or missing response from https://10.96.0.200:443/apis/metrics.k8s.io/v1beta1: context deadline exceeded" {
		t.Errorf("not available: %q", p)
	}
	a.Status.Conditions[0].Status = "True"
	if p := apiServiceProblem(a); p != "" {
		t.Errorf("available: %q", p)
	}

	var list nodeMetricsList
	list.Items = make([]nodeMetrics, 2)
	list.Items[0].Metadata.Name, list.Items[0].Usage = "cp-1", map[string]string{"cpu": "250m", "memory": "1Gi"}
	list.Items[1].Metadata.Name = "cp-2" // listed, without usage
	if got := nodesWithoutMetrics([]string{"cp-1", "cp-2", "worker-1"}, list); strings.Join(got, ",") != "cp-2,worker-1" {
		t.Errorf("nodes without metrics: %v", got)
	}
}

func TestHTTPProblem(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    httpAnswer
		want body
		prob string
	}{
		{"health", httpAnswer{Code: 200, Body: []byte("ok")}, anyBody, ""},
		{"products", httpAnswer{Code: 200, ContentType: "application/json", Body: []byte(`[{"id":1}]`)}, jsonBody, ""},
		{"products not JSON", httpAnswer{Code: 200, ContentType: "text/html", Body: []byte("<html>oops</html>")}, jsonBody,
			"GET /p answered 200 with a body that is not JSON (text/html): <html>oops</html>"},
		{"html", httpAnswer{Code: 200, ContentType: "text/html; charset=utf-8", Body: []byte("<!doctype html><html></html>")}, htmlBody, ""},
		{"html sniffed", httpAnswer{Code: 200, Body: []byte("<!DOCTYPE html><html></html>")}, htmlBody, ""},
		{"not html", httpAnswer{Code: 200, ContentType: "application/json", Body: []byte("{}")}, htmlBody,
			"GET /p answered 200 with application/json, want text/html"},
		{"no endpoints (the proxy's own answer)", httpAnswer{Code: 503, Err: errors.New(`no endpoints available for service "backend-service"`)}, anyBody,
			`GET /p answered 503 Service Unavailable: no endpoints available for service "backend-service"`},
		{"the app's error", httpAnswer{Code: 500, Body: []byte("Internal Server Error\n")}, anyBody,
			"GET /p answered 500 Internal Server Error: Internal Server Error"},
		{"no answer", httpAnswer{Err: context.DeadlineExceeded}, anyBody, "GET /p: context deadline exceeded"},
	} {
		if got := httpProblem("/p", tc.a, tc.want); got != tc.prob {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.prob)
		}
	}
}

func TestPgIsReadyProblem(t *testing.T) {
	for _, tc := range []struct {
		a    execAnswer
		want string
	}{
		{execAnswer{Exit: 0, Output: "127.0.0.1:5432 - accepting connections\n"}, ""},
		{execAnswer{Exit: 2, Output: "127.0.0.1:5432 - no response\n"}, "pg_isready exited 2: 127.0.0.1:5432 - no response"},
		{execAnswer{Exit: -1, Err: errors.New(`container not found ("postgresql")`)}, `pg_isready could not be run: container not found ("postgresql")`},
	} {
		if got := pgIsReadyProblem(tc.a); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestParseScope(t *testing.T) {
	for _, s := range []string{"addons", "platform", "all"} {
		if sc, err := ParseScope(s); err != nil || string(sc) != s {
			t.Errorf("%s: %q %v", s, sc, err)
		}
	}
	if _, err := ParseScope("everything"); err == nil || !strings.Contains(err.Error(), "want addons, platform or all") {
		t.Errorf("unknown scope: %v", err)
	}
}

func TestPsqlProblem(t *testing.T) {
	for _, tc := range []struct {
		a    execAnswer
		want string
	}{
		{execAnswer{Output: "PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu\n"}, ""},
		{execAnswer{Output: "WARNING: a notice first\nPostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu\n"}, ""},
		{execAnswer{Exit: 2, Output: "psql: error: FATAL:  password authentication failed for user \"postgres\"\n"},
			`psql -U postgres exited 2: psql: error: FATAL: password authentication failed for user "postgres"`},
		{execAnswer{Output: "Password for user postgres:"}, `psql answered SELECT version() with Password for user postgres:`},
		{execAnswer{Exit: -1, Err: errors.New("exec: psql: not found")}, "psql could not be run: exec: psql: not found"},
	} {
		if got := psqlProblem(tc.a); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
