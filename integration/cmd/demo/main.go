// Command demo is `make demo`: it builds what is missing (the agent, the
// Kubernetes binaries, the .deb packages, the test hosts' root
// filesystem), starts three control-plane and two worker test hosts (the
// topology `make conformance` judges), installs the
// packages with dpkg -i, writes the same config on each, runs `ecom-agent
// join` on all of them at once, then shows `ecom-agent status` and kubectl's
// view. The hosts stay up; `make demo-down` removes them.
//
//	demo up   [-n 3] [-workers 2] [-prefix demo] [-repo DIR]
//	demo down [-prefix demo]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/demo"
	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: demo up [-n N] [-workers W] [-prefix P] [-repo DIR] | demo down [-prefix P]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up(ctx, os.Args[2:])
	case "down":
		err = down(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: want up or down", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	n := fs.Int("n", 3, "number of control-plane hosts")
	workers := fs.Int("workers", 2, "number of worker hosts")
	prefix := fs.String("prefix", "demo", "host name prefix")
	repo := fs.String("repo", ".", "the repository (for make)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if env := findEnv(*prefix); env != nil {
		return fmt.Errorf("a demo is already running (environment %s, hosts %s1...): run `make demo-down` first", env.ID(), *prefix)
	}
	start := time.Now()
	var stages []demo.Stage
	// The build stages: each is a no-op when its output is current.
	for _, target := range []string{"build", "kube-bins", "deb", "platform-deb", "rootfs"} {
		logf("==> make %s", target)
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", *repo, target)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		err := cmd.Run()
		stages = append(stages, demo.Stage{Name: "make " + target, Took: time.Since(t0), Err: err})
		if err != nil {
			return fmt.Errorf("make %s: %w", target, err)
		}
	}
	debs, err := demo.NewestDebs(filepath.Join(*repo, "out"), true)
	if err != nil {
		return err
	}
	env, err := testhost.Open(ctx, testhost.Options{Prefix: *prefix, Detached: true, Logf: logf})
	if err != nil {
		return err
	}
	c, err := demo.Up(ctx, demo.Options{Env: env, N: *n, Workers: *workers, Debs: debs, Logf: logf})
	stages = append(stages, c.Stages...)
	printStages(stages, time.Since(start))
	if err != nil {
		return fmt.Errorf("%w\nthe hosts are still up for a look (make demo-down removes them)", err)
	}
	h := c.Hosts[0]
	// The platform: its images imported from ecom-agent-platform-images on
	// every node, PostgreSQL initialised, the schema migrated, every pod
	// Ready; then verify as an operator runs it.
	logf("==> the platform ready (ecom-agent verify)")
	t0 := time.Now()
	perr := demo.AwaitVerify(ctx, h, "all", 15*time.Minute)
	logf("    the platform ready done in %s", time.Since(t0).Round(100*time.Millisecond))
	show(ctx, h, "ecom-agent", "status")
	show(ctx, h, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "get", "nodes,pods,pvc", "-A")
	show(ctx, h, "kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "top", "nodes")
	show(ctx, h, "ecom-agent", "verify")
	if perr != nil {
		return fmt.Errorf("the platform did not pass verify within 15 minutes (above: what failed)\nthe hosts are still up for a look (make demo-down removes them)")
	}
	fmt.Printf(`
The cluster runs on %d test hosts (%s). Next:
  a shell on a host:   go run ./integration/cmd/testhosts exec %s -- bash
  kubectl:             go run ./integration/cmd/testhosts exec %s -- kubectl --kubeconfig /etc/kubernetes/admin.conf get all -n ecommerce
  the agent's status:  go run ./integration/cmd/testhosts exec %s -- ecom-agent status
  its log:             go run ./integration/cmd/testhosts exec %s -- journalctl -u ecom-agent
  remove everything:   make demo-down
No registry is reachable from the test hosts: the add-ons and the platform run
from the images the packages ship (ecom-agent-images and
ecom-agent-platform-images). The platform's own checks:
  kubectl -n ecommerce exec postgresql-0 -c postgresql -- psql -U postgres -d ecommerce -c "SELECT version();"
  kubectl get --raw /api/v1/namespaces/ecommerce/services/http:backend-service:http/proxy/api/products
`, len(c.Hosts), hostNames(c.Hosts), h.Name(), h.Name(), h.Name(), h.Name())
	return nil
}

func show(ctx context.Context, h *testhost.Host, args ...string) {
	fmt.Printf("\n$ %s   (on %s)\n", strings.Join(args, " "), h.Name())
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := h.Run(cctx, args...)
	fmt.Print(res.Stdout)
	if res.Stderr != "" {
		fmt.Print(res.Stderr)
	}
	if err != nil && res.ExitCode <= 0 {
		fmt.Printf("(%v)\n", err)
	}
}

func printStages(stages []demo.Stage, total time.Duration) {
	fmt.Println("\nstage timings:")
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, s := range stages {
		state := "ok"
		if s.Err != nil {
			state = "FAILED"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Name, s.Took.Round(100*time.Millisecond), state)
	}
	fmt.Fprintf(tw, "  total\t%s\t\n", total.Round(100*time.Millisecond))
	tw.Flush()
}

func hostNames(hs []*testhost.Host) string {
	var names []string
	for _, h := range hs {
		names = append(names, fmt.Sprintf("%s %s", h.Name(), h.Addr()))
	}
	return strings.Join(names, ", ")
}

// findEnv returns the detached environment with a host named prefix1.
func findEnv(prefix string) *testhost.Env {
	ids, err := testhost.List(testhost.Options{})
	if err != nil {
		return nil
	}
	for _, id := range ids {
		env, err := testhost.Attach(testhost.Options{Logf: logf}, id)
		if err == nil && env.Host(prefix+"1") != nil {
			return env
		}
	}
	return nil
}

func down(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	prefix := fs.String("prefix", "demo", "host name prefix")
	if err := fs.Parse(args); err != nil {
		return err
	}
	env := findEnv(*prefix)
	if env == nil {
		logf("no demo is running")
		return nil
	}
	err := env.Close()
	if err == nil {
		logf("demo environment %s removed", env.ID())
	}
	return errors.Join(err, ctx.Err())
}
