// Command testhosts starts test hosts (Debian systems with a real systemd,
// see package testhost) that outlive it, for demos and manual testing, and
// runs commands on them.
//
//	testhosts up -n 3 -prefix demo     start 3 hosts demo1..demo3, then exit
//	testhosts list                     list environments and their hosts
//	testhosts exec demo1 -- systemctl status
//	testhosts cp ./ecom-agent demo1:/usr/bin/ecom-agent
//	testhosts down                     tear down all detached environments
//
// A HOST is a host name, or ENV/NAME when several environments have a host
// of that name. Needs root. State lives in $ECOM_TESTHOST_STATE (default
// /var/lib/ecom-testhost).
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
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/ecom-platform/ecom-agent/integration/testhost"
)

const usage = `usage:
  testhosts up [-n N] [-prefix P]     start N hosts (P1..PN) that outlive this command
  testhosts list                      list environments and hosts
  testhosts exec HOST -- CMD [ARG...] run CMD on HOST, exit with its status
  testhosts cp [-mode M] LOCAL HOST:PATH
                                      copy a file to HOST (mode: LOCAL's)
  testhosts down [ENV...]             tear down the given, else all detached, environments
HOST is NAME, or ENV/NAME when names repeat across environments.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, os.Args[1], os.Args[2:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "testhosts: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	stop()
	os.Exit(code)
}

func run(ctx context.Context, cmd string, args []string) (int, error) {
	switch cmd {
	case "up":
		return 0, up(ctx, args)
	case "list":
		return 0, list(os.Stdout)
	case "exec":
		return execCmd(ctx, args)
	case "cp":
		return 0, cp(args)
	case "down":
		return 0, down(ctx, args)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return 0, nil
	}
	fmt.Fprint(os.Stderr, usage)
	return 2, fmt.Errorf("unknown command %q", cmd)
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// up starts a detached environment. If it is interrupted or a host fails
// to boot, it tears the environment down again.
func up(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	n := fs.Int("n", 3, "number of hosts")
	prefix := fs.String("prefix", "demo", "host name prefix")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if found, _ := matchHosts(*prefix + "1"); len(found) > 0 {
		return fmt.Errorf("environment %s has hosts named %s1... already: run testhosts down first, or pick another -prefix", found[0].Env().ID(), *prefix)
	}
	env, err := testhost.Open(ctx, testhost.Options{Prefix: *prefix, Detached: true, Logf: logf})
	if err != nil {
		return err
	}
	if _, err := env.StartHosts(ctx, *n); err != nil {
		return errors.Join(err, env.Close())
	}
	return list(os.Stdout)
}

func list(w io.Writer) error {
	ids, err := testhost.List(testhost.Options{})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENV\tHOST\tADDRESS\tSTATE\tPID\tOWNER")
	for _, id := range ids {
		env, err := testhost.Attach(testhost.Options{}, id)
		if err != nil {
			fmt.Fprintf(tw, "%s\t-\t-\t%v\t\t\n", id, err)
			continue
		}
		owner := "detached"
		if pid := env.OwnerPID(); pid != 0 {
			owner = "pid " + strconv.Itoa(pid)
		}
		for _, h := range env.Hosts() {
			state := "stopped"
			if h.Running() {
				state = "running"
			}
			if !h.Connected() {
				state += ",disconnected"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", id, h.Name(), h.Addr(), state, h.PID(), owner)
		}
	}
	return tw.Flush()
}

// execCmd runs a command on a host with this process's standard streams
// and returns its exit status.
func execCmd(ctx context.Context, args []string) (int, error) {
	if len(args) < 3 || args[1] != "--" {
		return 2, errors.New("usage: testhosts exec HOST -- CMD [ARG...]")
	}
	h, err := findHost(args[0])
	if err != nil {
		return 1, err
	}
	// A Ctrl-C is for the command, which gets it from the terminal too:
	// it only cancels ctx, which the command does not use.
	cmd, err := h.Command(context.WithoutCancel(ctx), args[2:]...)
	if err != nil {
		return 1, err
	}
	if term := os.Getenv("TERM"); term != "" {
		cmd.Env = append(cmd.Env, "TERM="+term)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

func cp(args []string) error {
	fs := flag.NewFlagSet("cp", flag.ContinueOnError)
	mode := fs.String("mode", "", "mode of the copy, in octal (default: the local file's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("usage: testhosts cp [-mode M] LOCAL HOST:PATH")
	}
	local, dest := fs.Arg(0), fs.Arg(1)
	name, path, ok := strings.Cut(dest, ":")
	if !ok {
		return fmt.Errorf("cp: %q: want HOST:PATH", dest)
	}
	fi, err := os.Stat(local)
	if err != nil {
		return err
	}
	perm := fi.Mode().Perm()
	if *mode != "" {
		m, err := strconv.ParseUint(*mode, 8, 32)
		if err != nil {
			return fmt.Errorf("cp: -mode %q: %w", *mode, err)
		}
		perm = os.FileMode(m).Perm()
	}
	h, err := findHost(name)
	if err != nil {
		return err
	}
	return h.CopyIn(local, path, perm)
}

// down tears down the given environments, or else every detached one and
// the leftovers of dead owners. Environments of running tests stay.
func down(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		if err := testhost.Sweep(ctx, testhost.Options{Logf: logf}); err != nil {
			return err
		}
		all, err := testhost.List(testhost.Options{})
		if err != nil {
			return err
		}
		for _, id := range all {
			if env, err := testhost.Attach(testhost.Options{}, id); err == nil && env.Detached() {
				ids = append(ids, id)
			}
		}
	}
	var errs []error
	for _, id := range ids {
		env, err := testhost.Attach(testhost.Options{Logf: logf}, id)
		if err == nil {
			err = env.Close()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// findHost finds a host by NAME or ENV/NAME.
func findHost(spec string) (*testhost.Host, error) {
	found, err := matchHosts(spec)
	if err != nil {
		return nil, err
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no host %q", spec)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("host %q is in %d environments: use ENV/NAME", spec, len(found))
}

// matchHosts returns the hosts that NAME or ENV/NAME names.
func matchHosts(spec string) ([]*testhost.Host, error) {
	envID, name, qualified := strings.Cut(spec, "/")
	if !qualified {
		name, envID = spec, ""
	}
	ids, err := testhost.List(testhost.Options{})
	if err != nil {
		return nil, err
	}
	var found []*testhost.Host
	for _, id := range ids {
		if envID != "" && id != envID {
			continue
		}
		env, err := testhost.Attach(testhost.Options{}, id)
		if err != nil {
			continue
		}
		if h := env.Host(name); h != nil {
			found = append(found, h)
		}
	}
	return found, nil
}
