package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ecom-platform/ecom-agent/config"
)

// Exit codes. They are part of the CLI's contract (documented in the
// README): scripts and cloud-init branch on them.
const (
	exitOK = 0
	// exitFailure is any failure without a more specific code.
	exitFailure = 1
	// exitConfig means the configuration is invalid; nothing was written.
	exitConfig = 2
	// exitPreflight: join's preflight checks failed; nothing was started.
	exitPreflight = 3
	// exitTimeout: join's --timeout passed before the node got there.
	exitTimeout = 4
	// exitRefused: the cluster refused this node (wrong secret or
	// cluster name, mismatched expect, another cluster's CA).
	exitRefused = 5
	// exitUnsafe: reset refused because removing this node's etcd
	// member would break the quorum; nothing was changed (--force
	// overrides).
	exitUnsafe = 6
	// exitUsage means the command line itself is wrong.
	exitUsage = 64
)

// exitError carries an exit code up to main with the error to print.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// report prints err the way an operator reads it and returns the exit code.
func report(w io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var cerr *config.Error
	if errors.As(err, &cerr) {
		fmt.Fprintln(w, "ecom-agent: invalid configuration, nothing was changed:")
		for _, line := range strings.Split(cerr.Error(), "\n") {
			fmt.Fprintln(w, "  "+line)
		}
		return exitConfig
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != errSilent {
			fmt.Fprintln(w, "ecom-agent: "+ee.err.Error())
		}
		return ee.code
	}
	fmt.Fprintln(w, "ecom-agent: "+err.Error())
	return exitFailure
}

// errSilent marks an exit code whose explanation was already printed.
var errSilent = errors.New("")
