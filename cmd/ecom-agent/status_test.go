package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/ecom-platform/ecom-agent/apilb"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/status"
)

func sampleStatus() status.Status {
	return status.Status{
		SchemaVersion: status.StatusSchemaVersion, Source: "daemon", Verdict: status.Degraded,
		Reasons: []string{"seeding: 1 object(s) failed to apply (see seed.problems)"},
		Node:    status.Node{Name: "cp-1", Role: "control-plane", Cluster: "shop"},
		Phase:   nodestate.PhaseAPIReady,
		ControlPlane: &status.ControlPlaneStatus{
			Ready: true, ReadySince: time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC),
			Binaries: []status.Binary{{Name: "kube-apiserver", Path: "/usr/bin/kube-apiserver", Version: "v1.37.2"}},
		},
		Certificates: &status.CertSummary{Count: 25, Nearest: "etcd/peer", NearestNotAfter: time.Now().Add(100*24*time.Hour + time.Hour)},
		Seed: &status.SeedStatus{
			Enabled: true, Leader: true, Seeder: "cp-1", Finished: time.Now().Add(-time.Minute),
			Counts:   map[string]int{"created": 70, "skipped": 1, "failed": 1},
			Problems: []string{"VerticalPodAutoscaler ecommerce/backend (71-vpa.yaml): skipped: not served"},
		},
	}
}

func TestStatusTableShowsControlPlaneAndSeeding(t *testing.T) {
	var buf bytes.Buffer
	if err := writeStatus(&buf, sampleStatus(), "table", false); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"DEGRADED  cp-1 (control-plane) in cluster shop: seeding: 1 object(s) failed",
		"kube-apiserver  ready since 2026-11-30T04:00:00Z",
		"binaries        kube-apiserver v1.37.2",
		"seeding         by cp-1 (this node), 1m0s ago: 70 created, 1 skipped, 1 failed",
		"  VerticalPodAutoscaler ecommerce/backend (71-vpa.yaml): skipped",
		"certificates    25, the first to expire: etcd/peer on ",
		"(in 100d)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour codes without a terminal:\n%s", out)
	}
	buf.Reset()
	_ = writeStatus(&buf, sampleStatus(), "table", true)
	if !strings.HasPrefix(buf.String(), "\x1b[1;33mDEGRADED\x1b[0m") {
		t.Errorf("degraded is not yellow on a terminal: %q", buf.String()[:30])
	}
}

func TestStatusTableShowsThePlatform(t *testing.T) {
	st := sampleStatus()
	st.Platform = &status.PlatformStatus{Workloads: 9, Ready: 7, NotReadySince: time.Now().Add(-11 * time.Minute), Overdue: true,
		NotReady: []status.PlatformProblem{{Object: "Deployment ecommerce/backend", Reason: "0/5 available; pod backend-1: ImagePullBackOff"}}}
	var buf bytes.Buffer
	if err := writeStatus(&buf, st, "table", false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"platform        7 of 9 seeded workloads available, not all since 11m0s ago (ecom-agent verify says more)",
		"  Deployment ecommerce/backend: 0/5 available; pod backend-1: ImagePullBackOff",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	st.Platform = &status.PlatformStatus{Workloads: 9, Ready: 9}
	buf.Reset()
	_ = writeStatus(&buf, st, "table", false)
	if !strings.Contains(buf.String(), "platform        9 of 9 seeded workloads available\n") {
		t.Errorf("all available:\n%s", buf.String())
	}
}

func TestStatusYAMLIsTheJSONDocument(t *testing.T) {
	var buf bytes.Buffer
	if err := writeStatus(&buf, sampleStatus(), "yaml", false); err != nil {
		t.Fatal(err)
	}
	var back status.Status
	if err := yaml.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if back.Seed == nil || back.Seed.Counts["created"] != 70 || back.ControlPlane == nil || !back.ControlPlane.Ready || back.Phase != nodestate.PhaseAPIReady {
		t.Errorf("round trip lost fields: %+v", back)
	}
	if !strings.Contains(buf.String(), "schema_version: 1") {
		t.Errorf("yaml keys are not the JSON names:\n%s", buf.String())
	}
}

func TestStatusTableShowsKubelet(t *testing.T) {
	s := sampleStatus()
	s.Node.Role = "worker"
	s.Kubelet = &status.NodeStatus{
		KubeletStarted: true, Reason: "KubeletNotReady: cni plugin not initialized",
		Runtime: "containerd v2.4.2 (CRI v1)", PodCIDR: "10.244.3.0/24",
		Routes: []string{"10.244.0.0/24 via 10.77.0.11", "10.244.1.0/24 via 10.77.0.12"},
		Images: []string{"/usr/share/ecom-agent/images/pause.tar"},
		APILoadBalancer: []apilb.EndpointStatus{
			{Address: "10.77.0.11:6443", Healthy: true, Connections: 3},
			{Address: "10.77.0.12:6443", LastError: "dial tcp: connection refused"},
		},
	}
	var buf bytes.Buffer
	if err := writeStatus(&buf, s, "table", false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"kubelet         Node not Ready: KubeletNotReady: cni plugin not initialized",
		"runtime         containerd v2.4.2 (CRI v1)",
		"pod network     10.244.3.0/24, 2 route(s) to other nodes' pods",
		"images          /usr/share/ecom-agent/images/pause.tar",
		"API via         127.0.0.1:6444 -> 10.77.0.11:6443 healthy (3 conns), 10.77.0.12:6443 unhealthy (0 conns)",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}
