package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ecom-platform/ecom-agent/config"
)

// Exit codes. They are part of the CLI's contract (the table in
// docs/operations.md and exitCodesHelp): scripts, monitoring and
// cloud-init branch on them, so each code means one thing.
const (
	exitOK = 0
	// exitFailure is any failure without a more specific code (and
	// status's degraded, verify's failed check).
	exitFailure = 1

	// 2 is status's down or unknown and verify's nothing could be
	// checked: statusDown in status.go.

	// exitPreflight: join's preflight checks failed; nothing was started.
	exitPreflight = 3
	// exitTimeout: join's --timeout passed before the node got there.
	exitTimeout = 4
	// exitRefused: the cluster refused this node (wrong secret or
	// cluster name, mismatched expect, another cluster's CA; a worker's
	// token or name).
	exitRefused = 5
	// exitUnsafe: reset refused because removing this node's etcd
	// member would break the quorum (--force overrides), etcd recover or
	// restore refused (a quorum answers, a snapshot that does not verify
	// or is another cluster's); nothing was changed.
	exitUnsafe = 6
	// exitUsage means the command line itself is wrong (sysexits'
	// EX_USAGE).
	exitUsage = 64
	// exitConfig means the configuration is invalid or cannot be read;
	// nothing was written (sysexits' EX_CONFIG). It is not 2, which a
	// monitor reads as a node down.
	exitConfig = 78
)

// exitCodesHelp is the table of every exit code, shown in the root
// command's help; docs/operations.md has the same table.
const exitCodesHelp = `Exit codes:
  0   success (status: healthy; verify: every check passed or was skipped)
  1   failure (status: degraded; verify: a check failed; certs
      check-expiration: a certificate is missing, expired or due)
  2   status: down or unknown; verify: nothing could be checked
  3   join: a preflight check failed; nothing was started
  4   join: --timeout passed
  5   join: refused by the cluster (wrong secret or cluster name,
      mismatched expect, another cluster's CA; a worker's token
      unknown, expired or another CA's, or its name taken)
  6   reset, etcd recover, etcd restore: refused as unsafe; nothing was
      changed
  64  wrong command line (unknown command or flag, bad flag value)
  78  invalid configuration or none readable; nothing was changed`

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
