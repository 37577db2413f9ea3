package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/etcdclient"
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
		Short: "Create, list and delete the tokens workers join with",
		Long: `A join token lets one worker join: it pins this cluster's CA, like
kubeadm's --discovery-token-ca-cert-hash, and names a record in the
cluster's token list (in etcd) that the control-plane agents check:

  EA1::sha256:<CA public key hash>::<id>.<secret>

Put it in the worker's /etc/ecom-agent/join-token (chmod 600) and name that
file in its config (join.token_file). The worker presents it once, to get
its kubelet and kube-proxy certificates and the gossip key, and its
kubelet certificate afterwards; it never holds the cluster secret.

Run these commands on a control-plane node of a formed cluster: they talk
to its etcd member. A token is accepted until it expires or is deleted.`,
	}
	cmd.AddCommand(c.tokenCreateCommand(), c.tokenListCommand(), c.tokenDeleteCommand())
	return cmd
}

// openTokenStore connects to the local etcd member's token list; tests
// point it at their own etcd.
var openTokenStore = func(root *hostfs.Root, cfg *config.Config) (*token.Store, func(), error) {
	if !cfg.IsControlPlane() {
		return nil, nil, errors.New("join tokens live in etcd: run this on a control-plane node")
	}
	cli, err := etcdclient.Local(root, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to this node's etcd member: %w", err)
	}
	return token.NewStore(cli), func() { _ = cli.Close() }, nil
}

// tokenJSON is a token, or a record, as create and list print it.
type tokenJSON struct {
	Token       string        `json:"token,omitempty"`
	ID          string        `json:"id"`
	ClusterName string        `json:"cluster_name"`
	CAHash      string        `json:"ca_hash"`
	Usages      []token.Usage `json:"usages"`
	Created     time.Time     `json:"created"`
	Expires     *time.Time    `json:"expires"` // null: never
	Expired     bool          `json:"expired"`
	CreatedBy   string        `json:"created_by,omitempty"`
	Description string        `json:"description,omitempty"`
}

func recordJSON(cfg *config.Config, r token.Record, now time.Time) tokenJSON {
	out := tokenJSON{ID: r.ID, ClusterName: cfg.ClusterName, CAHash: r.CAHash, Usages: r.Usages, Created: r.Created,
		Expired: r.Expired(now), CreatedBy: r.CreatedBy, Description: r.Description}
	if !r.Expires.IsZero() {
		exp := r.Expires
		out.Expires = &exp
	}
	return out
}

func (c *cli) tokenCreateCommand() *cobra.Command {
	var rootDir, output, description string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Print a new worker join token and add it to the cluster's list",
		Long: `create makes a token pinning this cluster's CA, adds its record (its id,
the SHA-256 of its secret, its expiry, never the secret) to the cluster's
token list in etcd, and prints the token on stdout, alone on its line.
Any control-plane agent accepts it from then on, until it expires or
token delete removes it.`,
		Example: "  ecom-agent token create --ttl 2h --description 'rack 4 workers' > join-token\n  ecom-agent token create -o json",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < 0 {
				return usageError{fmt.Errorf("--ttl %s: must not be negative; 0 means the token never expires", ttl)}
			}
			cfg, root, err := c.nodeSetup(rootDir)
			if err != nil {
				return err
			}
			hash, err := clusterCAHash(root)
			if errors.Is(err, fs.ErrNotExist) {
				return withCode(exitFailure, fmt.Errorf("this node has no cluster CA yet (%s is missing): "+
					"create tokens on a control-plane node of a formed cluster", pki.CertPath(string(pki.CA))))
			}
			if err != nil {
				return err
			}
			tok, err := token.New(hash)
			if err != nil {
				return err
			}
			now := time.Now()
			rec, err := token.NewRecord(tok, []token.Usage{token.UsageWorker}, now, ttl)
			if err != nil {
				return err
			}
			rec.CreatedBy, rec.Description = cfg.NodeName, description
			if err := withTokenStore(cmd.Context(), root, cfg, func(ctx context.Context, store *token.Store) error {
				if err := store.Add(ctx, rec); err != nil {
					return withCode(exitFailure, err)
				}
				return nil
			}); err != nil {
				return err
			}
			if ttl == 0 {
				fmt.Fprintf(c.stderr, "warning: token %s never expires; it stays valid until `ecom-agent token delete %s`. "+
					"Prefer a --ttl such as 24h\n", tok.ID(), tok.ID())
			}
			if output != outTable {
				out := recordJSON(cfg, rec, now)
				out.Token = tok.String()
				return writeDocument(c.stdout, out, output)
			}
			fmt.Fprintln(c.stdout, tok.String())
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", defaultTokenTTL, "how long the token is accepted; 0 for never (not recommended)")
	cmd.Flags().StringVar(&description, "description", "", "a note kept with the token, shown by token list")
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the node's files are under")
	addOutputFlag(cmd, &output)
	return cmd
}

func (c *cli) tokenListCommand() *cobra.Command {
	var rootDir, output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the cluster's join tokens (ids, never secrets)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, root, err := c.nodeSetup(rootDir)
			if err != nil {
				return err
			}
			var recs []token.Record
			var listErr error
			if err := withTokenStore(cmd.Context(), root, cfg, func(ctx context.Context, store *token.Store) error {
				recs, listErr = store.List(ctx)
				if listErr != nil && len(recs) == 0 {
					return withCode(exitFailure, listErr)
				}
				return nil
			}); err != nil {
				return err
			}
			now := time.Now()
			if output != outTable {
				out := make([]tokenJSON, 0, len(recs))
				for _, r := range recs {
					out = append(out, recordJSON(cfg, r, now))
				}
				if werr := writeDocument(c.stdout, out, output); werr != nil {
					return werr
				}
			} else {
				tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tUSAGES\tEXPIRES\tCREATED\tBY\tDESCRIPTION")
				for _, r := range recs {
					exp := "never"
					switch {
					case r.Expired(now):
						exp = "expired " + r.Expires.Format(time.RFC3339)
					case !r.Expires.IsZero():
						exp = fmt.Sprintf("%s (in %s)", r.Expires.Format(time.RFC3339), r.Expires.Sub(now).Round(time.Minute))
					}
					fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\t%s\n", r.ID, r.Usages, exp, r.Created.Format(time.RFC3339), orDash(r.CreatedBy), orDash(r.Description))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if listErr != nil {
				return withCode(exitFailure, fmt.Errorf("some records could not be read: %w", listErr))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the node's files are under")
	addOutputFlag(cmd, &output)
	return cmd
}

func (c *cli) tokenDeleteCommand() *cobra.Command {
	var rootDir string
	cmd := &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete join tokens: no agent accepts them from then on",
		Long: `delete removes tokens from the cluster's list by id (token list shows
them; the id is the part before the dot, or a whole token). Workers that
joined with a token keep their credentials: they renew them with their
kubelet certificate.`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, root, err := c.nodeSetup(rootDir)
			if err != nil {
				return err
			}
			var errs []error
			if err := withTokenStore(cmd.Context(), root, cfg, func(ctx context.Context, store *token.Store) error {
				for _, a := range args {
					id := a
					if tok, err := token.Parse(a); err == nil {
						id = tok.ID()
					}
					if err := store.Delete(ctx, id); err != nil {
						errs = append(errs, err)
						continue
					}
					fmt.Fprintf(c.stdout, "deleted join token %s\n", id)
				}
				return nil
			}); err != nil {
				return err
			}
			if len(errs) > 0 {
				return withCode(exitFailure, errors.Join(errs...))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&rootDir, "root", "/", "host root the node's files are under")
	return cmd
}

// withTokenStore runs f with the cluster's token list and a context
// bounded to 15 seconds.
func withTokenStore(ctx context.Context, root *hostfs.Root, cfg *config.Config, f func(context.Context, *token.Store) error) error {
	store, closeStore, err := openTokenStore(root, cfg)
	if err != nil {
		return withCode(exitFailure, err)
	}
	defer closeStore()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return f(ctx, store)
}

// nodeSetup loads the config and the host root of a command that works
// on this node's files (token, etcd snapshot, etcd recover).
func (c *cli) nodeSetup(rootDir string) (*config.Config, *hostfs.Root, error) {
	cfg, err := c.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	root, err := hostfs.New(rootDir)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--root: %w", err)}
	}
	return cfg, root, nil
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
