package verify

// The platform's monitoring: Prometheus scraping every target it found,
// and Grafana, which is seeded only where its image can be pulled.

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ecom-platform/ecom-agent/seed"
)

const (
	prometheusService = "prometheus-service"
	grafanaDeployment = "grafana"
)

// checkPrometheus: Prometheus answers, found targets, and every active
// target's last scrape succeeded.
func checkPrometheus(ctx context.Context, e *env) Result {
	obj := objectName("Service", platformNamespace, prometheusService)
	svc, err := e.cs.CoreV1().Services(platformNamespace).Get(ctx, prometheusService, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fail("", Problem{obj, "does not exist"})
	case err != nil:
		return broken("get "+obj, err)
	}
	if n, why, err := e.reader().serviceProblem(ctx, svc); err != nil {
		return broken("endpoints of "+obj, err)
	} else if n == 0 {
		return fail("", Problem{obj, why})
	}
	a := e.proxyGet(ctx, prometheusService, "/api/v1/targets")
	if why := httpProblem("/api/v1/targets", a, jsonBody); why != "" {
		return fail("", Problem{obj, why})
	}
	jobs, down, err := targetsDown(a.Body)
	if err != nil {
		return fail("", Problem{obj, err.Error()})
	}
	if len(down) > 0 {
		var probs []Problem
		for _, d := range down {
			probs = append(probs, Problem{obj, d})
		}
		return fail(fmt.Sprintf("%d target(s) down", len(down)), probs...)
	}
	return pass("every target up: " + jobs)
}

// targets is the part of Prometheus's /api/v1/targets answer the check
// reads.
type targets struct {
	Status string `json:"status"`
	Data   struct {
		ActiveTargets []struct {
			ScrapePool string            `json:"scrapePool"`
			ScrapeURL  string            `json:"scrapeUrl"`
			Health     string            `json:"health"`
			LastError  string            `json:"lastError"`
			Labels     map[string]string `json:"labels"`
		} `json:"activeTargets"`
	} `json:"data"`
}

// targetsDown reads a /api/v1/targets answer: the jobs with their number
// of targets ("backend 5, postgresql 1"), and a line for each target whose
// last scrape failed. A target not scraped yet (health "unknown") counts
// as down: the check is run again until it passes.
func targetsDown(body []byte) (jobs string, down []string, err error) {
	var t targets
	if err := json.Unmarshal(body, &t); err != nil {
		return "", nil, fmt.Errorf("/api/v1/targets: %v", err)
	}
	if t.Status != "success" {
		return "", nil, fmt.Errorf("/api/v1/targets: status %q", t.Status)
	}
	if len(t.Data.ActiveTargets) == 0 {
		return "", nil, fmt.Errorf("no target to scrape: Prometheus found none")
	}
	count := map[string]int{}
	for _, tg := range t.Data.ActiveTargets {
		count[tg.ScrapePool]++
		if tg.Health != "up" {
			why := tg.LastError
			if why == "" {
				why = "not scraped yet"
			}
			down = append(down, fmt.Sprintf("job %s, %s: %s: %s", tg.ScrapePool, tg.ScrapeURL, tg.Health, oneLine(why)))
		}
	}
	var names []string
	for j, n := range count {
		names = append(names, fmt.Sprintf("%s %d", j, n))
	}
	sort.Strings(names)
	sort.Strings(down)
	return strings.Join(names, ", "), down, nil
}

// checkGrafana: Grafana available where it was seeded; skipped, saying
// why, where it was not.
func checkGrafana(ctx context.Context, e *env) Result {
	d, err := e.cs.AppsV1().Deployments(platformNamespace).Get(ctx, grafanaDeployment, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return skip(seed.GrafanaNotSeeded)
	case err != nil:
		return broken("get Deployment "+platformNamespace+"/"+grafanaDeployment, err)
	}
	w := deploymentWorkload(d)
	if !w.ok {
		return fail("", e.reader().diagnose(ctx, w))
	}
	return pass(w.object() + " " + w.state)
}
