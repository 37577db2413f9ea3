// Package verify checks that a cluster works for the platform, as an
// on-call engineer asks it with `ecom-agent verify`: the add-ons the agent
// seeds (DNS, storage, metrics) and the platform's own objects and
// answers (workloads, Services, autoscalers, the backend, the frontend,
// PostgreSQL).
//
// Every check only reads: it lists and gets objects, asks the DNS Service,
// GETs through the API server's service proxy and runs pg_isready with
// pods/exec; it creates and changes no object. Each check runs under its own
// timeout. The verdicts are pure functions of the objects read
// (classify.go), table-tested without a cluster.
package verify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ecom-platform/ecom-agent/buildinfo"
)

// SchemaVersion is the version of the Report document: within a version,
// fields are only added.
const SchemaVersion = 1

// Status is one check's outcome.
type Status string

// The outcomes of a check. A skipped check does not fail the report.
const (
	OK   Status = "OK"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
)

// Scope selects the checks to run.
type Scope string

// The scopes: the add-ons the agent seeds, the platform's objects, or both.
const (
	ScopeAddOns   Scope = "addons"
	ScopePlatform Scope = "platform"
	ScopeAll      Scope = "all"
)

// ParseScope returns the Scope named s.
func ParseScope(s string) (Scope, error) {
	switch sc := Scope(s); sc {
	case ScopeAddOns, ScopePlatform, ScopeAll:
		return sc, nil
	}
	return "", fmt.Errorf("unknown scope %q: want addons, platform or all", s)
}

// Verdict sums the report up; `ecom-agent verify` exits 0, 1 and 2 for
// them, as `ecom-agent status` does for healthy, degraded and down.
type Verdict string

const (
	// Passed: no check failed (some may be skipped).
	Passed Verdict = "passed"
	// Failed: at least one check failed.
	Failed Verdict = "failed"
	// Unreachable: nothing could be checked: the API server does not
	// answer, or refuses the kubeconfig's credentials.
	Unreachable Verdict = "unreachable"
)

// Report is the result of a run, the document `verify -o json` prints.
type Report struct {
	SchemaVersion int     `json:"schema_version"`
	Verdict       Verdict `json:"verdict"`
	Scope         Scope   `json:"scope"`
	// Server is the API server the checks asked.
	Server string `json:"server"`
	// Error says why nothing could be checked (verdict unreachable).
	Error string `json:"error,omitempty"`
	// Checks are in a fixed order: dns, storage, metrics, workloads,
	// services, hpa, backend, frontend, postgresql (those in scope).
	Checks []Result `json:"checks"`
}

// Result is one check's outcome.
type Result struct {
	Name   string `json:"name"`
	Scope  Scope  `json:"scope"`
	Status Status `json:"status"`
	// Reason says in one line why the check failed or was skipped.
	Reason string `json:"reason,omitempty"`
	// Detail says what a passing check saw.
	Detail string `json:"detail,omitempty"`
	// Problems name every object at fault and why.
	Problems []Problem `json:"problems,omitempty"`
}

// Problem is one object at fault.
type Problem struct {
	// Object is "Kind namespace/name" (or "Kind name" when not namespaced).
	Object string `json:"object"`
	Reason string `json:"reason"`
}

func (p Problem) String() string { return p.Object + ": " + p.Reason }

// Failed returns the names of the checks that failed.
func (r Report) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == Fail {
			out = append(out, c.Name)
		}
	}
	return out
}

// Options set how Run checks.
type Options struct {
	Scope Scope
	// Timeout bounds each check, and the first contact with the API server.
	Timeout time.Duration
}

// DefaultTimeout is a check's timeout when Options.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// LoadKubeconfig reads a kubeconfig file into a client config for Run.
func LoadKubeconfig(path string) (*rest.Config, error) {
	kc, err := clientcmd.LoadFromFile(path)
	var pathErr *fs.PathError
	switch {
	case errors.As(err, &pathErr):
		return nil, err // names the path already
	case err != nil:
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*kc, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.UserAgent = "ecom-agent-verify/" + buildinfo.Version
	// The checks run at once and list a few kinds each.
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}

// check is one named check.
type check struct {
	name  string
	scope Scope
	run   func(ctx context.Context, e *env) Result
}

// checks is every check, in the report's order.
var checks = []check{
	{"dns", ScopeAddOns, checkDNS},
	{"storage", ScopeAddOns, checkStorage},
	{"metrics", ScopeAddOns, checkMetrics},
	{"workloads", ScopePlatform, checkWorkloads},
	{"services", ScopePlatform, checkServices},
	{"hpa", ScopePlatform, checkHPAs},
	{"backend", ScopePlatform, checkBackend},
	{"frontend", ScopePlatform, checkFrontend},
	{"postgresql", ScopePlatform, checkPostgreSQL},
	{"prometheus", ScopePlatform, checkPrometheus},
	{"grafana", ScopePlatform, checkGrafana},
}

// env is what the checks read the cluster with.
type env struct {
	cs  kubernetes.Interface
	cfg *rest.Config // for pods/exec
}

// Run runs the checks of opts.Scope against the API server of cfg, at
// once, each under opts.Timeout, and reports them in a fixed order.
func Run(ctx context.Context, cfg *rest.Config, opts Options) Report {
	if opts.Scope == "" {
		opts.Scope = ScopeAll
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	rep := Report{SchemaVersion: SchemaVersion, Scope: opts.Scope, Server: cfg.Host, Checks: []Result{}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		rep.Verdict, rep.Error = Unreachable, "cannot build a client: "+err.Error()
		return rep
	}
	e := &env{cs: cs, cfg: cfg}
	if err := e.reach(ctx, opts.Timeout); err != nil {
		rep.Verdict, rep.Error = Unreachable, err.Error()
		return rep
	}
	var todo []check
	for _, c := range checks {
		if opts.Scope == ScopeAll || c.scope == opts.Scope {
			todo = append(todo, c)
		}
	}
	results := make([]Result, len(todo))
	var wg sync.WaitGroup
	for i, c := range todo {
		wg.Go(func() { results[i] = e.runCheck(ctx, c, opts.Timeout) })
	}
	wg.Wait()
	rep.Checks = results
	rep.Verdict = Passed
	if len(rep.Failed()) > 0 {
		rep.Verdict = Failed
	}
	return rep
}

// reach asks the API server for a namespace every cluster has, with the
// kubeconfig's credentials: the one question whose failure means nothing
// can be checked.
func (e *env) reach(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := e.cs.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return nil
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server at %s refuses the kubeconfig's credentials: %v (an expired client certificate? `ecom-agent certs check-expiration`)", e.cfg.Host, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("the kubeconfig's user may not read the cluster: %v (verify needs an admin kubeconfig, such as admin.conf)", err)
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil:
		return fmt.Errorf("the API server at %s did not answer within %s: %v", e.cfg.Host, timeout, err)
	}
	return fmt.Errorf("the API server at %s does not answer: %v", e.cfg.Host, err)
}

// runCheck runs c under its timeout. A check that panics fails alone
// instead of taking the others down.
func (e *env) runCheck(ctx context.Context, c check, timeout time.Duration) (res Result) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			res = Result{Status: Fail, Reason: fmt.Sprintf("internal error: %v", p), Detail: string(debug.Stack())}
		}
		res.Name, res.Scope = c.name, c.scope
	}()
	res = c.run(ctx, e)
	if res.Status == Fail && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.Reason = fmt.Sprintf("timed out after %s: %s", timeout, res.Reason)
	}
	return res
}

// pass, skip, fail and broken build Results.
func pass(detail string) Result { return Result{Status: OK, Detail: detail} }

func skip(reason string) Result { return Result{Status: Skip, Reason: reason} }

// fail reports problems; summary heads them ("3 of 12 not available"),
// else the only problem heads itself, or their count.
func fail(summary string, problems ...Problem) Result {
	switch {
	case summary != "":
	case len(problems) == 1:
		summary = problems[0].String()
	default:
		summary = fmt.Sprintf("%d problems", len(problems))
	}
	return Result{Status: Fail, Reason: summary, Problems: problems}
}

// broken reports a question the API server did not answer.
func broken(what string, err error) Result {
	return Result{Status: Fail, Reason: what + ": " + oneLine(err.Error())}
}

// oneLine folds a multi-line message into one.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
