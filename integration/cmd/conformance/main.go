// Command conformance is `make conformance`: the upstream Kubernetes
// conformance suite on the demo's topology. It builds what is missing (the
// packages, the test hosts' root, the suite and its images), starts three
// control-plane and two worker test hosts, installs the packages with
// dpkg -i, shows the suite's images in /var/lib/ecom-agent/images/ (a
// read-only bind mount of their cache: the nodes pull nothing), joins every node at once, then runs the
// [Conformance] specs: in parallel, then the [Serial] ones one by one.
// It writes the JUnit reports and a summary to -report and prints the
// summary; the hosts are removed at the end unless -keep.
//
//	conformance [-repo .] [-report docs/conformance] [-prefix conf] [-keep]
//	            [-pass parallel,serial] [-procs 4]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/ecom-platform/ecom-agent/integration/conformance"
	"github.com/ecom-platform/ecom-agent/integration/demo"
	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "conformance: %v\n", err)
	}
	os.Exit(code)
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// run returns 0 when every spec passed, 1 when one failed or the run did
// not happen, 2 for bad flags.
func run(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("conformance", flag.ContinueOnError)
	repo := fs.String("repo", ".", "the repository (for make and tools/e2e)")
	report := fs.String("report", "docs/conformance", "where the reports and summary.md go")
	prefix := fs.String("prefix", "conf", "test host name prefix")
	keep := fs.Bool("keep", false, "leave the hosts up afterwards (remove them with `go run ./integration/cmd/testhosts`)")
	passes := fs.String("pass", "parallel,serial", "passes to run: parallel, serial, subset (comma-separated)")
	procs := fs.Int("procs", conformance.Parallel.Procs, "parallel ginkgo processes of the parallel pass")
	timeout := fs.Duration("timeout", 0, "end each pass after this long (default: the pass's own, 150m parallel, 90m serial)")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	var todo []conformance.Pass
	for _, name := range strings.Split(*passes, ",") {
		switch name {
		case "parallel":
			p := conformance.Parallel
			p.Procs = *procs
			todo = append(todo, p)
		case "serial":
			todo = append(todo, conformance.Serial)
		case "subset":
			todo = append(todo, conformance.Subset)
		default:
			return 2, fmt.Errorf("-pass %q: want parallel, serial or subset", name)
		}
		if *timeout > 0 {
			todo[len(todo)-1].Timeout = *timeout
		}
	}
	start := time.Now()
	for _, target := range []string{"build", "kube-bins", "deb", "rootfs"} {
		logf("==> make %s", target)
		if err := command(ctx, os.Stderr, "make", "--no-print-directory", "-C", *repo, target); err != nil {
			return 1, fmt.Errorf("make %s: %w", target, err)
		}
	}
	suite, err := output(ctx, filepath.Join(*repo, "tools/e2e/build.sh"))
	if err != nil {
		return 1, err
	}
	imagesDir, err := output(ctx, filepath.Join(*repo, "tools/e2e/images.sh"))
	if err != nil {
		return 1, err
	}
	if _, err := conformance.Archives(imagesDir); err != nil {
		return 1, err
	}
	kube, err := output(ctx, filepath.Join(*repo, "tools/kube/build.sh"))
	if err != nil {
		return 1, err
	}
	debs, err := demo.NewestDebs(filepath.Join(*repo, "out"), false)
	if err != nil {
		return 1, err
	}
	built := time.Since(start)

	env, err := testhost.Open(ctx, testhost.Options{Prefix: *prefix, Detached: *keep, Logf: logf, BeforeBoot: demo.MountImages(imagesDir)})
	if err != nil {
		return 1, err
	}
	if !*keep {
		defer env.Close()
	}
	c, err := demo.Up(ctx, demo.Options{Env: env, N: 3, Workers: 2, Debs: debs, ClusterName: "conformance", Logf: logf})
	if err != nil {
		return 1, err
	}
	clusterUp := time.Since(start) - built
	tmp, err := os.MkdirTemp("", "conformance-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(tmp)
	kubeconfig, err := conformance.Kubeconfig(c.ControlPlanes[0], tmp)
	if err != nil {
		return 1, err
	}
	if err := os.MkdirAll(*report, 0o755); err != nil {
		return 1, err
	}
	r := conformance.Run{SuiteDir: suite, Kubeconfig: kubeconfig, Kubectl: filepath.Join(kube, "kubectl"), ReportDir: tmp, Out: os.Stderr}
	var errs []error
	var ran conformance.Summary // the passes run now
	wholeSet := false
	for _, p := range todo {
		s, err := r.Pass(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ran = ran.Add(s)
		wholeSet = wholeSet || p.Name != conformance.Subset.Name
		if err := copyFile(filepath.Join(tmp, p.Name, "junit_01.xml"), filepath.Join(*report, "junit-"+p.Name+".xml")); err != nil {
			errs = append(errs, err)
		}
	}
	if wholeSet && len(errs) == 0 {
		// summary.md is of the whole set's latest reports in the
		// directory, so its two passes may run at different times
		// (-pass serial after -pass parallel). It is not written when a
		// pass left no report: it would show older results as today's.
		total, reports, err := conformance.ReadReports(*report)
		if err != nil {
			errs = append(errs, err)
		} else {
			facts := []string{
				"Kubernetes " + strings.TrimPrefix(filepath.Base(kube), "v") + ", the suite built from the same module (tools/e2e)",
				fmt.Sprintf("3 control-plane and 2 worker test hosts on one machine (%d cores), the packages installed with dpkg -i", runtime.NumCPU()),
				"reports: " + strings.Join(reports, ", ") + fmt.Sprintf(" (the parallel pass with %d ginkgo processes)", *procs),
				fmt.Sprintf("build %s (cached when warm), cluster up %s", built.Round(time.Second), clusterUp.Round(time.Second)),
				"last pass run on " + time.Now().UTC().Format("2006-01-02") + ", passes " + *passes,
			}
			md := total.Markdown("Conformance: the latest run", facts)
			if err := os.WriteFile(filepath.Join(*report, "summary.md"), []byte(md), 0o644); err != nil {
				errs = append(errs, err)
			}
			fmt.Println(md)
		}
	} else {
		fmt.Println(ran.Markdown("Conformance: passes "+*passes, nil))
	}
	if err := errors.Join(errs...); err != nil {
		return 1, err
	}
	if len(ran.Failed) > 0 || !ran.Complete() {
		return 1, fmt.Errorf("%d of %d specs failed, %d interrupted, %d not reached", len(ran.Failed), len(ran.Failed)+len(ran.Passed), len(ran.Interrupted), ran.NotReached)
	}
	return 0, nil
}

func command(ctx context.Context, out io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	return cmd.Run()
}

// output runs a build script and returns the directory it prints.
func output(ctx context.Context, script string) (string, error) {
	logf("==> %s", script)
	var b strings.Builder
	if err := command(ctx, &b, script); err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	return strings.TrimSpace(b.String()), nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}
