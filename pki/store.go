package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"path"

	"github.com/ecom-platform/ecom-agent/hostfs"
)

// Dir is the logical directory of the PKI, kubeadm's.
const Dir = "/etc/kubernetes/pki"

// File and directory modes. Private keys are 0600 and certificates 0644.
//
// Directories are 0755, the pki directory and pki/etcd alike: that is what
// kubeadm does (its writers, client-go's cert.WriteCert and
// keyutil.WriteKey, create missing parents 0755), so tooling that reads
// etcd/ca.crt as another user keeps working. Confidentiality comes from
// the 0600 keys, not from the directory. Directories that already exist
// keep the mode the operator gave them.
const (
	DirMode  fs.FileMode = 0o755
	CertMode fs.FileMode = 0o644
	KeyMode  fs.FileMode = 0o600
)

// The service-account key pair's files.
const (
	ServiceAccountKey = Dir + "/sa.key"
	ServiceAccountPub = Dir + "/sa.pub"
)

// CertPath returns the logical path of a certificate ("etcd/server" →
// /etc/kubernetes/pki/etcd/server.crt); a CAName converts to a name too.
func CertPath(name string) string { return Dir + "/" + name + ".crt" }

// KeyPath returns the logical path of the private key of a certificate.
func KeyPath(name string) string { return Dir + "/" + name + ".key" }

type filePair struct{ cert, key string }

func caFiles(name CAName) filePair {
	return filePair{cert: CertPath(string(name)), key: KeyPath(string(name))}
}

// Action is what Ensure did with one certificate or key.
type Action int

// The actions.
const (
	// Reused means the existing files were kept as they are.
	Reused Action = iota
	// Created means there was nothing and the files were created.
	Created
	// Reissued means existing files were replaced; the Outcome's Reason
	// says why.
	Reissued
)

// String returns "created", "reused" or "re-issued".
func (a Action) String() string {
	switch a {
	case Created:
		return "created"
	case Reissued:
		return "re-issued"
	default:
		return "reused"
	}
}

// MarshalText makes an Action print as its String in JSON.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Outcome is the result of ensuring one certificate or key.
type Outcome struct {
	Name   string `json:"name"`
	Action Action `json:"action"`
	// Reason says why the files were created or re-issued.
	Reason Reason `json:"reason"`
}

// String renders the outcome for logs: "apiserver: re-issued: SANs
// changed (added api.example.com)", "ca: reused", "sa: created".
func (o Outcome) String() string {
	if o.Action != Reissued {
		return o.Name + ": " + o.Action.String()
	}
	return o.Name + ": " + o.Action.String() + ": " + o.Reason.String()
}

// Store keeps the PKI files of one host under Dir.
type Store struct {
	root *hostfs.Root
	opts Options
}

// NewStore returns a Store over root. Options are validated by each
// operation that generates or checks something.
func NewStore(root *hostfs.Root, opts Options) *Store {
	return &Store{root: root, opts: opts}
}

// EnsureCA returns the authority of CA name, creating the CA if neither
// its certificate nor its key exists. An existing CA is only ever loaded
// and verified, never overwritten: a key that does not match, a missing
// half, a certificate that is not a CA or has expired, or a file that does
// not parse is an error (a *CAError saying what the operator can do).
func (s *Store) EnsureCA(name CAName) (*Authority, Outcome, error) {
	out := Outcome{Name: string(name)}
	opts, err := s.opts.resolve()
	if err != nil {
		return nil, out, fmt.Errorf("%s: %w", name, err)
	}
	if !name.valid() {
		return nil, out, fmt.Errorf("%s: unknown CA", name)
	}
	f := caFiles(name)
	certData, certOK, err := s.read(f.cert)
	if err != nil {
		return nil, out, fmt.Errorf("%s: %w", name, err)
	}
	keyData, keyOK, err := s.read(f.key)
	if err != nil {
		return nil, out, fmt.Errorf("%s: %w", name, err)
	}
	switch {
	case !certOK && !keyOK:
		a, kp, err := generateCA(name, opts)
		if err != nil {
			return nil, out, fmt.Errorf("%s: %w", name, err)
		}
		if err := s.writePair(f, kp.CertPEM, kp.KeyPEM); err != nil {
			return nil, out, fmt.Errorf("%s: %w", name, err)
		}
		out.Action, out.Reason = Created, Reason{ReasonMissing, "new CA"}
		return a, out, nil
	case certOK && !keyOK:
		return nil, out, &CAError{Name: string(name),
			Problem: f.cert + " exists but " + f.key + " does not",
			Remedy: "copy " + f.key + " from the control-plane node that created the CA, or restore it from a backup " +
				"(a worker never needs it: it uses the CA certificate only)"}
	case !certOK && keyOK:
		return nil, out, &CAError{Name: string(name),
			Problem: f.key + " exists but " + f.cert + " does not",
			Remedy: "restore " + f.cert + " from a backup or from another control-plane node; if the CA never " +
				"signed anything in use, remove " + f.key + " and a new CA will be created"}
	}
	a, err := ParseAuthority(name, certData, keyData, opts)
	if err != nil {
		return nil, out, err
	}
	// Same bytes: this only corrects the modes if someone changed them.
	if err := s.writePair(f, certData, keyData); err != nil {
		return nil, out, fmt.Errorf("%s: %w", name, err)
	}
	return a, out, nil
}

// LoadAuthority loads and verifies CA name with its key; it never creates
// anything. Only a control-plane node has CA keys to load.
func (s *Store) LoadAuthority(name CAName) (*Authority, error) {
	f := caFiles(name)
	certData, err := s.root.ReadFile(f.cert)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	keyData, err := s.root.ReadFile(f.key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ParseAuthority(name, certData, keyData, s.opts)
}

// LoadCACert loads the certificate of CA name and checks that it is a
// valid CA certificate. It does not read the CA key: this is what a worker
// uses.
func (s *Store) LoadCACert(name CAName) (*x509.Certificate, error) {
	data, err := s.root.ReadFile(CertPath(string(name)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cert, err := parseCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, CertPath(string(name)), err)
	}
	if err := checkCACert(name, cert, s.opts.withDefaults().Now()); err != nil {
		return nil, err
	}
	return cert, nil
}

// EnsureCert makes the files of spec (CertPath(spec.Name) and
// KeyPath(spec.Name)) hold a certificate from a that fits spec: an
// existing one that passes Check is kept untouched, otherwise a new key
// and certificate are issued and the Outcome says why.
func (s *Store) EnsureCert(a *Authority, spec CertSpec) (Outcome, error) {
	out := Outcome{Name: spec.Name}
	if a == nil {
		return out, fmt.Errorf("%s: no authority to issue from", spec.Name)
	}
	if err := spec.validate(); err != nil {
		return out, err
	}
	if spec.CA != a.Name() {
		return out, fmt.Errorf("%s: must be signed by %s, not by %s", spec.Name, spec.CA, a.Name())
	}
	f := filePair{cert: CertPath(spec.Name), key: KeyPath(spec.Name)}
	certData, certOK, err := s.read(f.cert)
	if err != nil {
		return out, fmt.Errorf("%s: %w", spec.Name, err)
	}
	keyData, _, err := s.read(f.key)
	if err != nil {
		return out, fmt.Errorf("%s: %w", spec.Name, err)
	}
	reason, err := Check(certData, keyData, a.Cert(), spec, s.opts)
	if err != nil {
		return out, fmt.Errorf("%s: %w", spec.Name, err)
	}
	if reason.Reusable() {
		// Same bytes: this only corrects the modes if someone changed them.
		if err := s.writePair(f, certData, keyData); err != nil {
			return out, fmt.Errorf("%s: %w", spec.Name, err)
		}
		return out, nil
	}
	kp, err := a.Issue(spec, s.opts)
	if err != nil {
		return out, err
	}
	if err := s.writePair(f, kp.CertPEM, kp.KeyPEM); err != nil {
		return out, fmt.Errorf("%s: %w", spec.Name, err)
	}
	out.Action, out.Reason = Reissued, reason
	if !certOK {
		out.Action = Created
	}
	return out, nil
}

// EnsureServiceAccountKey makes sure sa.key exists, creating it if
// absent, and that sa.pub is its public key. An existing sa.key is always
// kept (a new one would invalidate every service-account token); sa.pub
// is derived data and rewritten if it differs. An unreadable sa.key, or an
// sa.pub without sa.key, is an error.
func (s *Store) EnsureServiceAccountKey() (Outcome, error) {
	const name = "sa"
	out := Outcome{Name: name}
	opts, err := s.opts.resolve()
	if err != nil {
		return out, fmt.Errorf("%s: %w", name, err)
	}
	keyData, keyOK, err := s.read(ServiceAccountKey)
	if err != nil {
		return out, fmt.Errorf("%s: %w", name, err)
	}
	pubOld, pubOK, err := s.read(ServiceAccountPub)
	if err != nil {
		return out, fmt.Errorf("%s: %w", name, err)
	}
	if !keyOK {
		if pubOK {
			return out, &CAError{Name: name,
				Problem: ServiceAccountPub + " exists but " + ServiceAccountKey + " does not",
				Remedy: "copy " + ServiceAccountKey + " from another control-plane node (all of them must share it); " +
					"if this is the first control-plane node, remove " + ServiceAccountPub + " to create a new pair"}
		}
		key, err := generateKey(opts.KeyAlgorithm)
		if err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		if keyData, err = marshalKeyPEM(key); err != nil {
			return out, fmt.Errorf("%s: %w", name, err)
		}
		out.Action, out.Reason = Created, Reason{ReasonMissing, "new key pair"}
	}
	key, err := parseKeyPEM(keyData)
	if err != nil {
		return out, &CAError{Name: name, Err: err,
			Problem: ServiceAccountKey + " is not a readable private key: " + err.Error(),
			Remedy: "restore it from a backup or from another control-plane node; replacing it invalidates " +
				"every service-account token, so to do that on purpose remove " + ServiceAccountKey + " and " + ServiceAccountPub}
	}
	pub, err := marshalPublicKeyPEM(key.Public())
	if err != nil {
		return out, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := s.write(ServiceAccountKey, keyData, KeyMode); err != nil {
		return out, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := s.write(ServiceAccountPub, pub, CertMode); err != nil {
		return out, fmt.Errorf("%s: %w", name, err)
	}
	if keyOK && !bytes.Equal(pubOld, pub) {
		out.Action, out.Reason = Reissued, Reason{ReasonKeyMismatch, ServiceAccountPub + " rewritten from " + ServiceAccountKey}
		if !pubOK {
			out.Reason = Reason{ReasonMissing, ServiceAccountPub + " derived from " + ServiceAccountKey}
		}
	}
	return out, nil
}

// read returns a file's content; ok is false if it does not exist.
func (s *Store) read(logical string) (data []byte, ok bool, err error) {
	data, err = s.root.ReadFile(logical)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return data, true, nil
}

// writePair writes a key and then its certificate: a crash in between
// leaves a key that does not match the certificate, which the next run
// re-issues (or, for a CA, reports), never a certificate without its key.
func (s *Store) writePair(f filePair, certPEM, keyPEM []byte) error {
	if _, err := s.write(f.key, keyPEM, KeyMode); err != nil {
		return err
	}
	_, err := s.write(f.cert, certPEM, CertMode)
	return err
}

// write writes a file atomically, creating missing directories with
// DirMode exactly (not as reduced by the umask).
func (s *Store) write(logical string, data []byte, mode fs.FileMode) (hostfs.Result, error) {
	for _, dir := range []string{Dir, path.Dir(logical)} {
		exists, err := s.root.Exists(dir)
		if err != nil {
			return hostfs.Unchanged, err
		}
		if !exists {
			if err := s.root.MkdirAll(dir, DirMode); err != nil {
				return hostfs.Unchanged, err
			}
		}
	}
	return s.root.WriteFileDirMode(logical, data, mode, DirMode)
}
