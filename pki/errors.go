package pki

import "fmt"

// CAError reports a CA (or service-account key) that exists but cannot be
// used. It never leads to regeneration: replacing a CA would invalidate
// every certificate and kubeconfig it signed, on every node, so the
// operator has to decide. Problem says what is wrong and Remedy what the
// operator can do about it.
type CAError struct {
	Name    string // "ca", "etcd/ca", "front-proxy-ca" or "sa"
	Problem string
	Remedy  string
	Err     error // the underlying parse error, if any
}

// Error returns "<name>: <problem>; refusing to replace it automatically.
// To fix: <remedy>".
func (e *CAError) Error() string {
	return fmt.Sprintf("%s: %s; refusing to replace it automatically. To fix: %s", e.Name, e.Problem, e.Remedy)
}

// Unwrap returns the underlying parse error, if any.
func (e *CAError) Unwrap() error { return e.Err }
