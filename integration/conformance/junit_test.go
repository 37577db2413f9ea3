package conformance

import (
	"encoding/xml"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// A report as the suite writes it (trimmed): a passed, a failed and a
// skipped spec, and the suite's own nodes.
const report = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" disabled="0" errors="0" failures="1" time="93.5">
  <testsuite name="Kubernetes e2e suite" package="/e2e" tests="5" disabled="0" skipped="1" errors="0" failures="1" time="93.5">
    <testcase name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="1.2"></testcase>
    <testcase name="[It] [sig-node] Pods should be submitted and removed [Conformance] [NodeConformance]" classname="Kubernetes e2e suite" status="passed" time="12.5"></testcase>
    <testcase name="[It] [sig-network] DNS should provide DNS for services [Conformance]" classname="Kubernetes e2e suite" status="failed" time="70">
      <failure message="[FAILED] Unable to read wheezy_udp@dns-test-service from pod dns-1234&#xA;more detail" type="failed">[FAILED] Unable to read ...</failure>
    </testcase>
    <testcase name="[sig-storage] NFS should mount [Feature:NFS]" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped - Only supported for providers [gce gke]"></skipped>
    </testcase>
    <testcase name="[It] [sig-apps] Job should run a job [Conformance]" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
    <testcase name="[It] [sig-apps] Job should be slow [Slow]" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
    <testcase name="[It] [sig-node] Probing container should have monotonically increasing restart count [Conformance]" classname="Kubernetes e2e suite" status="interrupted" time="47.3">
      <error message="" type="interrupted">[INTERRUPTED] Interrupted by User&#xA;In [It] at: container_probe.go:200</error>
    </testcase>
    <testcase name="[ReportAfterSuite] Kubernetes e2e suite report" classname="Kubernetes e2e suite" status="passed" time="0.1"></testcase>
  </testsuite>
</testsuites>`

func TestParseJUnit(t *testing.T) {
	s, err := ParseJUnit([]byte(report), Pass{Name: "test", Focus: `\[Conformance\]|NFS`})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Passed) != 1 || len(s.Failed) != 1 || len(s.Skipped) != 1 || len(s.Interrupted) != 1 || s.NotReached != 1 || s.NotSelected != 1 || s.Complete() {
		t.Fatalf("passed %v, failed %v, skipped %v, interrupted %v, not reached %d, not selected %d", s.Passed, s.Failed, s.Skipped, s.Interrupted, s.NotReached, s.NotSelected)
	}
	if i := s.Interrupted[0]; i.Message != "[INTERRUPTED] Interrupted by User" {
		t.Errorf("interrupted case %+v", i)
	}
	if f := s.Failed[0]; !strings.HasPrefix(f.Name, "[sig-network] DNS") || f.Message != "[FAILED] Unable to read wheezy_udp@dns-test-service from pod dns-1234" {
		t.Errorf("failed case %+v", f)
	}
	if k := s.Skipped[0]; k.Message != "skipped - Only supported for providers [gce gke]" {
		t.Errorf("skipped case %+v", k)
	}
	if s.Took.Seconds() != 93.5 {
		t.Errorf("took %s, want the suite's 93.5s", s.Took)
	}
	md := s.Markdown("Conformance", []string{"Kubernetes v1.37.2"})
	for _, want := range []string{"**1 passed, 1 failed, 1 skipped, 1 interrupted, 1 not reached**", "**incomplete**", "## Failed (1)", "Unable to read wheezy_udp", "- Kubernetes v1.37.2"} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q:\n%s", want, md)
		}
	}
}

func TestParseJUnitRefusesGarbage(t *testing.T) {
	if _, err := ParseJUnit([]byte("<testsuites><testsuite>"), Subset); err == nil {
		t.Error("a truncated report parsed")
	}
}

// Every subset spec names a spec of the suite: the committed report of
// the parallel pass lists every spec of e2e.test (most of them skipped),
// so a misspelt name, or one renamed upstream, fails here and not only in
// the e2e run.
func TestSubsetSpecsExist(t *testing.T) {
	data, err := os.ReadFile("../../docs/conformance/junit-parallel.xml")
	if err != nil {
		t.Fatal(err)
	}
	var j junit
	if err := xml.Unmarshal(data, &j); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, suite := range j.Suites {
		for _, c := range suite.Cases {
			names = append(names, strings.TrimPrefix(c.Name, "[It] "))
		}
	}
	for _, spec := range SubsetSpecs {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, spec) }) {
			t.Errorf("no spec of the suite is named %q", spec)
		}
	}
}

func TestSubsetFocusMatchesEachSpecOnly(t *testing.T) {
	re := regexp.MustCompile(Subset.Focus)
	for _, s := range SubsetSpecs {
		if !re.MatchString(s) {
			t.Errorf("the focus misses %q", s)
		}
	}
	for _, other := range []string{
		"[sig-network] DNS should provide DNS for pods for Hostname [Conformance]",
		"[sig-node] Probing container should *not* be restarted with a /healthz http liveness probe [Conformance] [NodeConformance]",
	} {
		if re.MatchString(other) {
			t.Errorf("the focus matches %q", other)
		}
	}
}
