package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/token"
)

// defaultTokenTTL is how long `token create` makes a token last, as
// kubeadm's bootstrap tokens.
const defaultTokenTTL = 24 * time.Hour

func (c *cli) tokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create and check join tokens (not yet a way to join: nodes join with the cluster secret)",
		Long: `A join token names this cluster and pins its CA, like kubeadm's
--discovery-token-ca-cert-hash, and expires by itself:

  EA1::sha256:<CA public key hash>::<id>.<expiry>.<mac>

No command accepts a token to join yet: nodes, workers included, join with
the cluster secret in their config (docs/security.md says what that allows
and what is still open). Today a token only lets a holder of the
cluster secret check, with token verify, that a CA hash is this cluster's.

Any node holding the cluster secret creates and verifies tokens; no list of
tokens is stored. A token cannot be revoked on its own: it stays valid until
it expires or the cluster secret changes.`,
	}
	cmd.AddCommand(c.tokenCreateCommand(), c.tokenVerifyCommand())
	return cmd
}

// tokenJSON is `token create -o json`.
type tokenJSON struct {
	Token       string     `json:"token"`
	ID          string     `json:"id"`
	ClusterName string     `json:"cluster_name"`
	CAHash      string     `json:"ca_hash"`
	Expires     *time.Time `json:"expires"` // null: never
}

func (c *cli) tokenCreateCommand() *cobra.Command {
	var rootDir, output string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Print a new token for this cluster (no command accepts it to join yet)",
		Long: `create prints a new token on stdout: this cluster's name and CA hash, an
expiry, and a MAC made with the cluster secret. It needs the cluster secret
(from the config) and the cluster CA certificate, so run it on a
control-plane node of a formed cluster. Nothing is stored: token verify, on
any node with the cluster secret, accepts the token until it expires.

A token does not let a node join: no command takes one yet, and workers
join with the cluster secret (see docs/security.md).`,
		Example: "  ecom-agent token create --ttl 2h\n  ecom-agent token create -o json",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < 0 {
				return usageError{fmt.Errorf("--ttl %s: must not be negative; 0 means the token never expires", ttl)}
			}
			cfg, err := c.loadConfig()
			if err != nil {
				return err
			}
			root, err := hostfs.New(rootDir)
			if err != nil {
				return usageError{fmt.Errorf("--root: %w", err)}
			}
			hash, err := clusterCAHash(root)
			if errors.Is(err, fs.ErrNotExist) {
				return withCode(exitFailure, fmt.Errorf("this node has no cluster CA yet (%s is missing): "+
					"create tokens on a control-plane node of a formed cluster", pki.CertPath(string(pki.CA))))
			}
			if err != nil {
				return err
			}
			tok, err := token.New(cfg.Secret(), cfg.ClusterName, hash, ttl, time.Now())
			if err != nil {
				return err
			}
			if ttl == 0 {
				fmt.Fprintf(c.stderr, "warning: token %s never expires; it stays valid until the cluster secret changes. "+
					"Prefer a --ttl such as 24h\n", tok.ID())
			}
			if output != outTable {
				out := tokenJSON{Token: tok.String(), ID: tok.ID(), ClusterName: cfg.ClusterName, CAHash: tok.CAHash()}
				if exp := tok.Expires(); !exp.IsZero() {
					out.Expires = &exp
				}
				return writeDocument(c.stdout, out, output)
			}
			fmt.Fprintln(c.stdout, tok.String())
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", defaultTokenTTL, "how long the token is accepted; 0 for never (not recommended)")
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the node's files are under")
	addOutputFlag(cmd, &output)
	return cmd
}

func (c *cli) tokenVerifyCommand() *cobra.Command {
	var rootDir string
	cmd := &cobra.Command{
		Use:   "verify TOKEN|-",
		Short: "Check that a join token was issued by this cluster and has not expired; exit 0 valid, 1 invalid",
		Long: `verify checks a join token with this node's cluster secret and cluster
name, and, when this node has the cluster CA, that the token pins it. With
"-" the token is read from stdin, which keeps it out of the process list
and the shell history. Exit codes: 0 valid, 1 invalid (the reason is on
stderr), 78 invalid config.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := c.loadConfig()
			if err != nil {
				return err
			}
			root, err := hostfs.New(rootDir)
			if err != nil {
				return usageError{fmt.Errorf("--root: %w", err)}
			}
			s := args[0]
			if s == "-" {
				data, err := io.ReadAll(io.LimitReader(c.stdin, 4096))
				if err != nil {
					return fmt.Errorf("read the token from stdin: %w", err)
				}
				s = string(data)
			}
			now := time.Now()
			tok, err := checkToken(cfg, root, s, now)
			if err != nil {
				return withCode(exitFailure, err)
			}
			expiry := "never expires"
			if exp := tok.Expires(); !exp.IsZero() {
				expiry = fmt.Sprintf("expires %s (in %s)", exp.Format(time.RFC3339), exp.Sub(now).Round(time.Second))
			}
			fmt.Fprintf(c.stdout, "valid: token %s of cluster %s, pins CA %s, %s\n", tok.ID(), cfg.ClusterName, tok.CAHash(), expiry)
			return nil
		},
	}
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the node's files are under")
	return cmd
}

// usageArgs makes a wrong number of arguments a usage error (exit 64), as
// the root command does for its direct subcommands.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// checkToken parses and verifies a token, and checks its CA hash against
// this node's cluster CA when there is one.
func checkToken(cfg *config.Config, root *hostfs.Root, s string, now time.Time) (token.Token, error) {
	tok, err := token.Parse(s)
	if err != nil {
		return tok, err
	}
	if err := tok.Verify(cfg.Secret(), cfg.ClusterName, now); err != nil {
		return tok, err
	}
	hash, err := clusterCAHash(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return tok, nil // nothing to compare with: the MAC vouches for the hash
	case err != nil:
		return tok, err
	case !strings.EqualFold(hash, tok.CAHash()):
		return tok, fmt.Errorf("join token %s pins CA %s but this node's cluster CA is %s; "+
			"it was created before the CA was replaced, or by another cluster sharing this secret and name", tok.ID(), tok.CAHash(), hash)
	}
	return tok, nil
}

// clusterCAHash returns the hash of this node's cluster CA certificate,
// refusing an expired or malformed one; a missing one is fs.ErrNotExist.
func clusterCAHash(root *hostfs.Root) (string, error) {
	if _, err := pki.NewStore(root, pki.Options{}).LoadCACert(pki.CA); err != nil {
		return "", err
	}
	data, err := root.ReadFile(pki.CertPath(string(pki.CA)))
	if err != nil {
		return "", err
	}
	return token.HashPEM(data)
}
