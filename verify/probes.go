package verify

// The platform's own answers: backend, frontend (through the API server's
// service proxy) and PostgreSQL (pg_isready through pods/exec).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"
)

// The platform's objects, as seed/manifests/30-postgresql.yaml,
// 40-backend.yaml and 50-frontend.yaml name them.
const (
	platformNamespace  = "ecommerce"
	backendService     = "backend-service"
	frontendService    = "frontend-service"
	httpPortName       = "http"
	postgresSet        = "postgresql"
	postgresContainer  = "postgresql"
	execOutputMaxBytes = 4 << 10
)

// pgIsReady is run when the container's readiness probe is not pg_isready
// itself.
var pgIsReady = []string{"pg_isready", "-h", "127.0.0.1", "-p", "5432"}

// psqlVersion is the seeds' own check, as an operator types it in
// `kubectl exec`: the superuser on the local socket (peer
// authentication, no password), the platform's database.
var psqlVersion = []string{"psql", "-U", "postgres", "-d", "ecommerce", "-tAc", "SELECT version();"}

// probe is one GET a Service must answer.
type probe struct {
	path string
	want body
}

// checkBackend: /health answers 2xx, /api/products 2xx with JSON.
func checkBackend(ctx context.Context, e *env) Result {
	return e.checkHTTP(ctx, backendService, []probe{{"/health", anyBody}, {"/api/products", jsonBody}})
}

// checkFrontend: / answers 2xx with HTML.
func checkFrontend(ctx context.Context, e *env) Result {
	return e.checkHTTP(ctx, frontendService, []probe{{"/", htmlBody}})
}

// checkHTTP GETs each probe's path from Service ecommerce/name's port
// "http" through the API server's service proxy, once the Service has a
// ready endpoint.
func (e *env) checkHTTP(ctx context.Context, name string, probes []probe) Result {
	obj := objectName("Service", platformNamespace, name)
	svc, err := e.cs.CoreV1().Services(platformNamespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fail("", Problem{obj, "does not exist"})
	case err != nil:
		return broken("get "+obj, err)
	}
	n, why, err := e.reader().serviceProblem(ctx, svc)
	if err != nil {
		return broken("endpoints of "+obj, err)
	}
	if n == 0 {
		return fail("", Problem{obj, why})
	}
	var probs []Problem
	var seen []string
	for _, p := range probes {
		a := e.proxyGet(ctx, name, p.path)
		if why := httpProblem(p.path, a, p.want); why != "" {
			probs = append(probs, Problem{obj, why})
			continue
		}
		seen = append(seen, fmt.Sprintf("GET %s %d", p.path, a.Code))
	}
	if len(probs) > 0 {
		return fail("", probs...)
	}
	return pass(fmt.Sprintf("%s through the API server's service proxy (%d ready endpoint(s))", strings.Join(seen, ", "), n))
}

// proxyGet GETs path from Service ecommerce/name's http port through the
// API server's service proxy.
func (e *env) proxyGet(ctx context.Context, name, path string) httpAnswer {
	w := e.cs.CoreV1().Services(platformNamespace).ProxyGet("http", name, httpPortName, path, nil)
	req, ok := w.(*rest.Request) // what client-go's clientset returns: it tells the status and content type
	if !ok {
		return httpAnswer{Err: fmt.Errorf("the client's service proxy request is a %T", w)}
	}
	var a httpAnswer
	res := req.Do(ctx).StatusCode(&a.Code).ContentType(&a.ContentType)
	a.Body, a.Err = res.Raw()
	return a
}

// checkPostgreSQL: every pod of StatefulSet ecommerce/postgresql Ready, and
// pg_isready answering in its postgresql container.
func checkPostgreSQL(ctx context.Context, e *env) Result {
	obj := objectName("StatefulSet", platformNamespace, postgresSet)
	s, err := e.cs.AppsV1().StatefulSets(platformNamespace).Get(ctx, postgresSet, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fail("", Problem{obj, "does not exist"})
	case err != nil:
		return broken("get "+obj, err)
	}
	r := e.reader()
	w := statefulSetWorkload(s)
	sel, err := metav1.LabelSelectorAsSelector(s.Spec.Selector)
	if err != nil {
		return fail("", Problem{obj, "its selector: " + err.Error()})
	}
	pods, err := r.podsMatching(ctx, platformNamespace, sel)
	if err != nil {
		return broken("pods of "+obj, err)
	}
	if _, p := firstPodProblem(pods); p != "" || len(pods) == 0 || !w.ok {
		return fail("", r.diagnose(ctx, w))
	}
	var probs []Problem
	var answers []string
	for i := range pods {
		p := &pods[i]
		a := e.exec(ctx, p, postgresContainer, readinessCommand(p, postgresContainer))
		if why := pgIsReadyProblem(a); why != "" {
			probs = append(probs, Problem{objectName("Pod", p.Namespace, p.Name), why})
			continue
		}
		v := e.exec(ctx, p, postgresContainer, psqlVersion)
		// An exec stream sometimes ends before the output of a command
		// that exits at once reached it (seen on the demo: exit 0, no
		// output): asked again, at most twice.
		for i := 0; i < 2 && v.Exit == 0 && v.Err == nil && strings.TrimSpace(v.Output) == "" && ctx.Err() == nil; i++ {
			v = e.exec(ctx, p, postgresContainer, psqlVersion)
		}
		if why := psqlProblem(v); why != "" {
			probs = append(probs, Problem{objectName("Pod", p.Namespace, p.Name), why})
			continue
		}
		version, _, _ := strings.Cut(psqlVersionLine(v.Output), " on ")
		answers = append(answers, p.Name+": "+oneLine(a.Output)+", psql: "+version)
	}
	if len(probs) > 0 {
		return fail("", probs...)
	}
	return pass(fmt.Sprintf("%s %s; pg_isready %s", obj, w.state, strings.Join(answers, "; ")))
}

// readinessCommand is the container's readiness probe when it runs
// pg_isready (the seeded one names the database), else pgIsReady.
func readinessCommand(p *corev1.Pod, container string) []string {
	for _, c := range p.Spec.Containers {
		if c.Name == container && c.ReadinessProbe != nil && c.ReadinessProbe.Exec != nil {
			if cmd := c.ReadinessProbe.Exec.Command; len(cmd) > 0 && cmd[0] == "pg_isready" {
				return cmd
			}
		}
	}
	return pgIsReady
}

// exec runs cmd in a container of pod p with pods/exec (WebSocket, else
// SPDY, as kubectl does) and returns its exit code and output; ctx bounds
// it. It creates no object.
func (e *env) exec(ctx context.Context, p *corev1.Pod, container string, cmd []string) execAnswer {
	req := e.cs.CoreV1().RESTClient().Post().Namespace(p.Namespace).Resource("pods").Name(p.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	spdy, err := remotecommand.NewSPDYExecutor(e.cfg, "POST", req.URL())
	if err != nil {
		return execAnswer{Exit: -1, Err: err}
	}
	ws, err := remotecommand.NewWebSocketExecutor(e.cfg, "GET", req.URL().String())
	if err != nil {
		return execAnswer{Exit: -1, Err: err}
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return execAnswer{Exit: -1, Err: err}
	}
	var out limitedBuffer
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Stderr: &out})
	a := execAnswer{Output: out.String()}
	var exit utilexec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.Exited():
		a.Exit = exit.ExitStatus()
	default:
		a.Exit, a.Err = -1, err
	}
	return a
}

// limitedBuffer keeps the first execOutputMaxBytes written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := execOutputMaxBytes - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
