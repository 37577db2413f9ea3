// Command unitsctl drives a units.Manager from the command line, so that
// end-to-end tests can run it inside a test host against the host's own
// systemd. It prints results as JSON on standard output.
//
//	unitsctl apply [-restart] SPECS.json   (a JSON array of units.Spec)
//	unitsctl start|stop|restart NAME
//	unitsctl status NAME
//	unitsctl journal NAME N
//	unitsctl remove NAME...
//	unitsctl watch-start NAME               (starts NAME, waits for it to fail)
//
// A failed job prints {"job_error": ...} and exits 1; other errors go to
// standard error with exit status 2.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/units"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	err := run(ctx, os.Args[1:])
	cancel()
	var jerr *units.JobError
	switch {
	case errors.As(err, &jerr):
		emit(map[string]any{"job_error": jerr, "error": err.Error()})
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "unitsctl:", err)
		os.Exit(2)
	}
}

func emit(v any) {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "unitsctl:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: unitsctl apply|start|stop|restart|status|journal|remove|watch-start ARGS")
	}
	root, err := hostfs.New("/")
	if err != nil {
		return err
	}
	m, err := units.Connect(ctx, root, units.Options{JobTimeout: time.Minute})
	if err != nil {
		return err
	}
	defer m.Close()

	cmd, args := args[0], args[1:]
	switch cmd {
	case "apply":
		restart := len(args) > 0 && args[0] == "-restart"
		if restart {
			args = args[1:]
		}
		if len(args) != 1 {
			return errors.New("usage: unitsctl apply [-restart] SPECS.json")
		}
		data, err := os.ReadFile(args[0])
		if err != nil {
			return err
		}
		var specs []units.Spec
		if err := json.Unmarshal(data, &specs); err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		changes, err := m.Apply(ctx, specs)
		if err != nil {
			return err
		}
		out := map[string]any{"changes": changes}
		if restart {
			restarted, err := m.RestartIfChanged(ctx, changes)
			if err != nil {
				return err
			}
			out["restarted"] = restarted
		}
		emit(out)
	case "start", "stop", "restart":
		if len(args) != 1 {
			return fmt.Errorf("usage: unitsctl %s NAME", cmd)
		}
		op := map[string]func(context.Context, string) error{"start": m.Start, "stop": m.Stop, "restart": m.Restart}[cmd]
		if err := op(ctx, args[0]); err != nil {
			return err
		}
		emit(map[string]any{"ok": true})
	case "status":
		if len(args) != 1 {
			return errors.New("usage: unitsctl status NAME")
		}
		st, err := m.Status(ctx, args[0])
		if err != nil {
			return err
		}
		emit(st)
	case "journal":
		if len(args) != 2 {
			return errors.New("usage: unitsctl journal NAME N")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		lines, err := m.Journal(ctx, args[0], n)
		if err != nil {
			return err
		}
		emit(lines)
	case "remove":
		if err := m.Remove(ctx, args); err != nil {
			return err
		}
		emit(map[string]any{"ok": true})
	case "watch-start":
		if len(args) != 1 {
			return errors.New("usage: unitsctl watch-start NAME")
		}
		return watchStart(ctx, m, args[0])
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	return nil
}

// watchStart watches name, starts it, and prints what Watch reported once
// the unit has failed.
func watchStart(ctx context.Context, m *units.Manager, name string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var seen []units.UnitStatus
	first := make(chan struct{})
	watched := make(chan error, 1)
	go func() {
		watched <- m.Watch(ctx, []string{name}, func(s units.UnitStatus) {
			seen = append(seen, s)
			if len(seen) == 1 {
				close(first)
			}
			if s.Failed() {
				cancel()
			}
		})
	}()
	select {
	case <-first:
	case err := <-watched:
		return err
	}
	if err := m.Start(ctx, name); err != nil {
		return err
	}
	if err := <-watched; err != nil {
		return err
	}
	if len(seen) == 0 || !seen[len(seen)-1].Failed() {
		return fmt.Errorf("watch ended without seeing %s fail: %+v", name, seen)
	}
	emit(seen)
	return nil
}
