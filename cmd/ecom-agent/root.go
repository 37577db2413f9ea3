package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ecom-platform/ecom-agent/buildinfo"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/internal/editdist"
)

// cli holds what every command shares: streams, the global flags and
// the logger built from them.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configPath     string
	logLevel       slog.Level
	// hostRoot is the root status reads the node's files under when
	// the daemon does not answer; "" is "/" (tests set a directory).
	hostRoot string
}

func (c *cli) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: c.logLevel}))
}

// levelValue is --log-level: one of the four names, refused otherwise
// while the command line is parsed (exit 64).
type levelValue struct{ level *slog.Level }

var logLevels = []string{"debug", "info", "warn", "error"}

func (l levelValue) String() string { return strings.ToLower(l.level.String()) }
func (l levelValue) Type() string   { return "level" }

func (l levelValue) Set(s string) error {
	if !slices.Contains(logLevels, strings.ToLower(s)) {
		return fmt.Errorf("want %s", orList(logLevels))
	}
	return l.level.UnmarshalText([]byte(s))
}

// loadConfig reads the node's config; errors come back as *config.Error so
// main exits with the config exit code.
func (c *cli) loadConfig() (*config.Config, error) {
	return config.Load(c.configPath, config.DefaultLoadOptions())
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// `ecom-agent etcd` hands its whole command line to etcd untouched, so
	// etcd's own flag parsing and help apply; `etcd snapshot` and `etcd
	// recover` are ours.
	if len(args) > 0 && args[0] == "etcd" && (len(args) < 2 || (args[1] != "snapshot" && args[1] != "recover" && args[1] != "restore")) {
		return runEtcd(args[1:])
	}
	// `ecom-agent etcdctl` likewise, with this node's connection flags.
	if len(args) > 0 && args[0] == "etcdctl" {
		return runEtcdctl(args[1:])
	}
	// `ecom-agent etcdutl` likewise (it works on files only).
	if len(args) > 0 && args[0] == "etcdutl" {
		return runEtcdutl(args[1:])
	}
	return (&cli{stdin: stdin, stdout: stdout, stderr: stderr}).run(args)
}

// run runs one command line and returns the exit code.
func (c *cli) run(args []string) int {
	stderr := c.stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := c.rootCommand()
	root.SetArgs(joinOptionalValues(root, args))
	err := root.ExecuteContext(ctx)
	var ue usageError
	// cobra reports an unknown subcommand with a plain error; it is a
	// usage mistake all the same.
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		err = usageError{err}
	}
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "ecom-agent: "+strings.TrimRight(ue.Error(), "\n"))
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", helpPath(root, args))
		return exitUsage
	}
	return report(stderr, err)
}

// usageError is a mistake on the command line.
type usageError struct{ error }

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "ecom-agent",
		Short: "Bootstrap and run a bare-metal Kubernetes node",
		Long: `ecom-agent runs on every control-plane and worker host. It generates the
cluster PKI, renders the configs of etcd, the control plane and the kubelet,
runs them as systemd units, forms the etcd quorum with its peers by gossip,
and seeds the platform's workloads once the API server is healthy.

` + exitCodesHelp,
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Before the completion command is made: it keeps the writer.
	root.SetIn(c.stdin)
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVarP(&c.configPath, "config", "c", config.DefaultPath, "agent config file")
	root.SetVersionTemplate(versionText(currentVersions()))
	c.logLevel = slog.LevelInfo
	root.PersistentFlags().Var(levelValue{&c.logLevel}, "log-level", "log level: "+orList(logLevels))
	root.AddCommand(
		c.joinCommand(),
		c.runCommand(),
		c.statusCommand(),
		c.verifyCommand(),
		c.membersCommand(),
		c.renderCommand(),
		c.certsCommand(),
		c.tokenCommand(),
		c.kubeconfigCommand(),
		c.resetCommand(),
		c.etcdCommand(),
		etcdctlCommand(),
		etcdutlCommand(),
		c.versionCommand(),
		c.configCommand(),
		c.internalCommand(),
	)
	root.SetHelpCommand(helpCommand())
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, cmd := range root.Commands() {
		strictArgs(cmd)
	}
	return root
}

// strictArgs makes a wrong argument a usage error (exit 64) on cmd and
// below: a command without an argument check takes none, and a group
// (a command that only holds subcommands) refuses an unknown subcommand
// with a suggestion instead of printing its help and exiting 0.
func strictArgs(cmd *cobra.Command) {
	if cmd.HasSubCommands() && !cmd.Runnable() {
		cmd.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		}
		cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	if cmd.Args == nil {
		cmd.Args = cobra.NoArgs
	}
	args := cmd.Args
	cmd.Args = func(cmd *cobra.Command, a []string) error {
		if err := args(cmd, a); err != nil {
			var ue usageError
			if errors.As(err, &ue) {
				return err
			}
			return usageError{err}
		}
		return nil
	}
	for _, sub := range cmd.Commands() {
		strictArgs(sub)
	}
}

// unknownCommand is the usage error for a subcommand cmd does not have,
// with the ones it most likely meant, or else the ones it has.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	var names []string
	for _, sub := range cmd.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
		}
	}
	if s := suggestCommands(name, names); len(s) > 0 {
		msg += "; did you mean " + orList(s) + "?"
	} else if len(names) > 0 {
		msg += "; its commands are " + orList(names)
	}
	return usageError{errors.New(msg)}
}

// suggestCommands returns the names a mistyped name most likely meant:
// those within an edit per three letters (at least one), those it
// abbreviates, and those it shares a long start with ("check-expiry" for
// check-expiration).
func suggestCommands(typed string, names []string) []string {
	typed = strings.ToLower(typed)
	var out []string
	for _, n := range names {
		common := 0
		for common < len(typed) && common < len(n) && typed[common] == n[common] {
			common++
		}
		if editdist.Levenshtein(typed, n) <= max(1, len(typed)/3) || (len(typed) >= 2 && strings.HasPrefix(n, typed)) ||
			(common >= 4 && 2*common >= len(typed)) {
			out = append(out, n)
		}
	}
	return out
}

// helpCommand is `help [command]`; an unknown command is a usage error
// with a suggestion, as on the command line itself.
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil {
				return usageError{err}
			}
			if len(rest) > 0 {
				return unknownCommand(target, rest[0])
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		},
	}
}

// helpPath is the command whose --help a usage error points at: the
// deepest one args name (help's mistakes point at the root's).
func helpPath(root *cobra.Command, args []string) string {
	if cmd, _, err := root.Find(args); err == nil && cmd != nil && cmd.Name() != "help" {
		return cmd.CommandPath()
	}
	return root.CommandPath()
}

// joinOptionalValues lets a duration flag whose value is optional take it
// as the next argument too: pflag reads `status -w 5s` as -w with its
// default and an argument "5s". It rewrites that to -w=5s when the next
// argument is a duration, so -w alone keeps its default.
func joinOptionalValues(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		return args
	}
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" {
			return append(out, args[i+1:]...)
		}
		name := ""
		switch {
		case strings.HasPrefix(a, "--") && !strings.Contains(a, "="):
			name = a[2:]
		case len(a) == 2 && a[0] == '-' && a[1] != '-':
			if sf := cmd.Flags().ShorthandLookup(a[1:]); sf != nil {
				name = sf.Name
			}
		}
		f := cmd.Flags().Lookup(name)
		if f == nil || f.NoOptDefVal == "" || f.Value.Type() != "duration" || i+1 == len(args) {
			continue
		}
		if _, err := time.ParseDuration(args[i+1]); err == nil {
			out[len(out)-1] = "--" + f.Name + "=" + args[i+1]
			i++
		}
	}
	return out
}
