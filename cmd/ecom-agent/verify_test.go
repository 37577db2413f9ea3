package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecom-platform/ecom-agent/verify"
)

func TestVerifyUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"verify", "--scope", "everything"}, `--scope: unknown scope "everything": want addons, platform or all`},
		{[]string{"verify", "-o", "xml"}, `invalid argument "xml" for "-o, --output" flag: want table, json or yaml`},
		{[]string{"verify", "--timeout", "0s"}, "--timeout 0s: want a positive duration, such as 30s"},
		{[]string{"verify", "--timeout", "soon"}, "invalid argument"},
		{[]string{"verify", "extra"}, "unknown command"},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d and %q", tc.args, code, out, errOut, exitUsage, tc.want)
		}
	}
}

// Without a usable kubeconfig nothing can be checked: exit 2, and the
// message says what to pass.
func TestVerifyWithoutKubeconfig(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.conf")
	if err := os.WriteFile(garbage, []byte("clusters: [this is not a kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{filepath.Join(dir, "admin.conf"), []string{"admin.conf does not exist", "control-plane node", "--kubeconfig"}},
		{garbage, []string{"kubeconfig " + garbage + ": ", "--kubeconfig with an admin kubeconfig"}},
	} {
		code, out, errOut := runCLI(t, "verify", "--kubeconfig", tc.path)
		if code != statusDown || out != "" {
			t.Errorf("%s: exit %d, stdout %q; want %d", tc.path, code, out, statusDown)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr lacks %q: %s", tc.path, w, errOut)
			}
		}
	}
}

// writeKubeconfig writes a kubeconfig for server with a token.
func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin.conf")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: test}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, server)
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyUnreachableExitsTwo(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	kc := writeKubeconfig(t, "http://"+addr)
	code, out, _ := runCLI(t, "verify", "--kubeconfig", kc, "--timeout", "5s")
	if code != statusDown || !strings.HasPrefix(out, "CANNOT CHECK  the API server at http://"+addr+" does not answer") {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	code, out, _ = runCLI(t, "verify", "--kubeconfig", kc, "--timeout", "5s", "-o", "json")
	var rep verify.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != statusDown || rep.Verdict != verify.Unreachable || rep.Error == "" {
		t.Errorf("exit %d, %v, report %+v", code, err, rep)
	}
}

// fakeAPIServer answers the first question verify asks, empty lists,
// and 404 for every single object: no add-on is seeded, nor the platform.
func fakeAPIServer(t *testing.T) string {
	t.Helper()
	lists := map[string]bool{"deployments": true, "statefulsets": true, "daemonsets": true, "services": true, "horizontalpodautoscalers": true}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch last := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]; {
		case r.Method != http.MethodGet:
			t.Errorf("verify sent %s %s", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusMethodNotAllowed)
		case r.URL.Path == "/api/v1/namespaces/kube-system":
			fmt.Fprint(w, `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"kube-system"}}`)
		case lists[last]:
			fmt.Fprint(w, `{"metadata":{},"items":[]}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"%s not found"}`, last)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestVerifyExitCodes(t *testing.T) {
	kc := writeKubeconfig(t, fakeAPIServer(t))
	code, out, errOut := runCLI(t, "verify", "--kubeconfig", kc, "--scope", "addons")
	if code != statusHealthy || !strings.HasPrefix(out, "PASSED  all 3 checks pass (3 skipped)") ||
		!strings.Contains(out, "not seeded: no Deployment kube-system/coredns") {
		t.Errorf("add-ons not seeded: exit %d, stdout:\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "verify", "--kubeconfig", kc, "--scope", "platform")
	for _, want := range []string{
		"FAILED  4 of 8 checks failed: backend, frontend, postgresql, prometheus",
		"workloads   SKIP    nothing seeded",
		"backend     FAIL    Service ecommerce/backend-service: does not exist",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("platform: stdout lacks %q:\n%s", want, out)
		}
	}
	if code != statusDegraded {
		t.Errorf("platform: exit %d, want %d; %s", code, statusDegraded, errOut)
	}
}

func sampleReport() verify.Report {
	return verify.Report{
		SchemaVersion: verify.SchemaVersion, Verdict: verify.Failed, Scope: verify.ScopeAll, Server: "https://10.77.1.11:6443",
		Checks: []verify.Result{
			{Name: "dns", Scope: verify.ScopeAddOns, Status: verify.OK,
				Detail: "kubernetes.default.svc.cluster.local -> 10.96.0.1 (asked 10.96.0.10:53); Deployment kube-system/coredns: 2/2 available, 2 ready endpoint(s)"},
			{Name: "storage", Scope: verify.ScopeAddOns, Status: verify.OK,
				Detail: "default StorageClass local-path (rancher.io/local-path); Deployment local-path-storage/local-path-provisioner available; 2 claim(s) Bound"},
			{Name: "metrics", Scope: verify.ScopeAddOns, Status: verify.Skip, Reason: "not seeded: no Deployment kube-system/metrics-server"},
			{Name: "workloads", Scope: verify.ScopePlatform, Status: verify.Fail, Reason: "2 of 9 not available", Problems: []verify.Problem{
				{Object: "Deployment ecommerce/backend", Reason: `0/5 available; pod backend-7d4b9c-2xkq4: container backend: ImagePullBackOff: Back-off pulling image "ecommerce/backend:1.4.0"`},
				{Object: "StatefulSet ecommerce/postgresql", Reason: "0/1 ready; pod postgresql-0: Pending: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."},
			}},
			{Name: "backend", Scope: verify.ScopePlatform, Status: verify.Fail,
				Reason:   "Service ecommerce/backend-service: no ready endpoints: 5 pod(s) match, none Ready; pod backend-7d4b9c-2xkq4: container backend: ImagePullBackOff",
				Problems: []verify.Problem{{Object: "Service ecommerce/backend-service", Reason: "no ready endpoints: 5 pod(s) match, none Ready; pod backend-7d4b9c-2xkq4: container backend: ImagePullBackOff"}}},
		},
	}
}

func TestVerifyTable(t *testing.T) {
	var buf bytes.Buffer
	if err := writeVerify(&buf, sampleReport(), "table", false); err != nil {
		t.Fatal(err)
	}
	want := `FAILED  2 of 5 checks failed: workloads, backend
asked https://10.77.1.11:6443, scope all

CHECK      RESULT  DETAIL
dns        OK      kubernetes.default.svc.cluster.local -> 10.96.0.1 (asked 10.96.0.10:53); Deployment kube-system/coredns: 2/2 available, 2 ready endpoint(s)
storage    OK      default StorageClass local-path (rancher.io/local-path); Deployment local-path-storage/local-path-provisioner available; 2 claim(s) Bound
metrics    SKIP    not seeded: no Deployment kube-system/metrics-server
workloads  FAIL    2 of 9 not available
                     Deployment ecommerce/backend: 0/5 available; pod backend-7d4b9c-2xkq4: container backend: ImagePullBackOff: Back-off pulling image "ecommerce/backend:1.4.0"
                     StatefulSet ecommerce/postgresql: 0/1 ready; pod postgresql-0: Pending: Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.
backend    FAIL    Service ecommerce/backend-service: no ready endpoints: 5 pod(s) match, none Ready; pod backend-7d4b9c-2xkq4: container backend: ImagePullBackOff
`
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	_ = writeVerify(&buf, sampleReport(), "table", true)
	if !strings.HasPrefix(buf.String(), "\x1b[1;31mFAILED\x1b[0m") || !strings.Contains(buf.String(), "\x1b[1;32mOK\x1b[0m") {
		t.Errorf("no colour on a terminal: %q", buf.String()[:40])
	}
}

// The JSON document is the report, with stable names.
func TestVerifyJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := writeVerify(&buf, sampleReport(), "json", false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"schema_version": 1`, `"verdict": "failed"`, `"status": "SKIP"`, `"object": "Deployment ecommerce/backend"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("json lacks %s:\n%s", want, buf.String())
		}
	}
	var back verify.Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || len(back.Checks) != 5 || len(back.Checks[3].Problems) != 2 {
		t.Errorf("round trip: %v %+v", err, back)
	}
}
