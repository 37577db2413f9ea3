package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/buildinfo"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/seed"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/status/collect"
	"github.com/ecom-platform/ecom-agent/units"
)

// Exit codes of `status`, for scripts and monitoring.
const (
	statusHealthy  = 0
	statusDegraded = 1
	statusDown     = 2
)

func (c *cli) statusCommand() *cobra.Command {
	var output, socket string
	var watch time.Duration
	var schema bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show this node's health; exit 0 healthy, 1 degraded, 2 down or unknown",
		Long: `status asks the running agent over its control socket. When the agent does
not answer, it reads the node's state file, systemd and etcd itself and says
so. Exit codes: 0 healthy, 1 degraded, 2 down or unknown (a node whose
agent does not answer and whose config cannot be read is down too; run
config validate for its problems).

-o json and -o yaml print the status document (schema_version 1: fields are
only added within a version); --schema prints its JSON Schema. --watch
(-w) redraws it every 2s, or every interval given (-w 5s, --watch=5s),
until interrupted.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if schema {
				_, err := c.stdout.Write(status.StatusSchema)
				return err
			}
			colour := output == "table" && isTerminal(c.stdout)
			for {
				st := c.queryStatus(cmd.Context(), socket)
				var buf bytes.Buffer
				if err := writeStatus(&buf, st, output, colour); err != nil {
					return err
				}
				if watch > 0 && colour {
					fmt.Fprint(c.stdout, "\x1b[H\x1b[2J") // clear the screen
				}
				if watch > 0 {
					fmt.Fprintf(c.stdout, "%s  (every %s; Ctrl-C stops)\n", time.Now().Format(time.TimeOnly), watch)
				}
				if _, err := c.stdout.Write(buf.Bytes()); err != nil {
					return err
				}
				if watch <= 0 {
					return verdictCode(st)
				}
				select {
				case <-cmd.Context().Done():
					return verdictCode(st)
				case <-time.After(watch):
				}
			}
		},
	}
	addOutputFlag(cmd, &output)
	cmd.Flags().DurationVarP(&watch, "watch", "w", 0, "redraw every interval (e.g. 2s) until interrupted")
	cmd.Flags().Lookup("watch").NoOptDefVal = "2s"
	cmd.Flags().StringVar(&socket, "socket", bootstrap.AgentSocket, "the agent's control socket")
	cmd.Flags().BoolVar(&schema, "schema", false, "print the JSON Schema of the -o json document and exit")
	return cmd
}

// queryStatus asks the daemon, and falls back to reading the node itself.
// When neither says much (no daemon, no config, a node that never
// joined), the first reason says so plainly with what to run.
func (c *cli) queryStatus(ctx context.Context, socket string) status.Status {
	st, daemonErr := status.QueryStatus(ctx, socket)
	if daemonErr == nil {
		return st
	}
	silent, fix := daemonSilence(socket, daemonErr)
	cfg, err := c.loadConfig()
	if err != nil {
		reason := fmt.Sprintf("%s, and the config %s is invalid; `ecom-agent config validate` lists every problem", silent, c.configPath)
		if errors.Is(err, fs.ErrNotExist) {
			reason = fmt.Sprintf("%s, and there is no config at %s: this node has not been set up; write the config "+
				"(`ecom-agent config print-defaults` prints the commented example), then run `ecom-agent join`", silent, c.configPath)
		}
		return status.Status{
			SchemaVersion: status.StatusSchemaVersion, Source: "none", Verdict: status.Down,
			Node:    status.Node{Version: buildinfo.Version},
			Reasons: []string{reason},
		}
	}
	root, err := hostfs.New(cmp.Or(c.hostRoot, "/"))
	if err != nil {
		return status.Status{SchemaVersion: status.StatusSchemaVersion, Source: "none", Verdict: status.Down, Reasons: []string{err.Error()}}
	}
	if joined, _ := root.Exists(bootstrap.AgentStateFile); !joined {
		// Nothing ran here yet: no units to ask systemd about, no etcd.
		st = collect.Local(ctx, cfg, root, nil)
		st.Reasons = append([]string{fmt.Sprintf("this node has not joined its cluster (there is no %s) and %s: run `ecom-agent join`",
			bootstrap.AgentStateFile, silent)}, withoutNotJoined(st.Reasons)...)
		return st
	}
	var sd collect.Systemd
	m, err := units.Connect(ctx, root, units.Options{})
	if err != nil {
		fmt.Fprintf(c.stderr, "cannot reach systemd either: %v\n", err)
	} else {
		defer m.Close()
		sd = m
	}
	st = collect.Local(ctx, cfg, root, sd)
	st.Reasons = append(st.Reasons, silent+": "+fix)
	return st
}

// daemonSilence says in plain words why the agent did not answer on its
// socket, and what to do about it.
func daemonSilence(socket string, err error) (why, fix string) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("the agent is not running (no socket at %s)", socket),
			"start it with `systemctl start ecom-agent`; `journalctl -u ecom-agent` says why it stopped"
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("the agent is not running (nothing listens on %s)", socket),
			"start it with `systemctl start ecom-agent`; `journalctl -u ecom-agent` says why it stopped"
	case errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("the agent's socket %s may not be opened by this user", socket), "run status as root"
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("the agent does not answer on %s in time", socket),
			"it may be stuck: `journalctl -u ecom-agent` shows what it does"
	}
	return fmt.Sprintf("the agent did not answer on %s: %v", socket, err),
		"`journalctl -u ecom-agent` shows what it does"
}

// withoutNotJoined drops collect's own "has not joined" reason, which
// queryStatus replaces with one that says what to run.
func withoutNotJoined(reasons []string) []string {
	var out []string
	for _, r := range reasons {
		if !strings.HasPrefix(r, "this node has not joined") {
			out = append(out, r)
		}
	}
	return out
}

// writeStatus renders the status as a table, JSON or YAML.
func writeStatus(w io.Writer, st status.Status, output string, colour bool) error {
	if output != outTable {
		return writeDocument(w, st, output)
	}
	printStatus(w, st, colour)
	return nil
}

// verdictCode is status's exit: 0 healthy, 1 degraded, 2 down or unknown.
func verdictCode(st status.Status) error {
	switch st.Verdict {
	case status.Healthy:
		return nil
	case status.Degraded:
		return withCode(statusDegraded, errSilent)
	default:
		return withCode(statusDown, errSilent)
	}
}

// isTerminal reports whether w is a terminal: colour and screen redraws
// only go there, never into a pipe or a file.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// paint colours a verdict for a terminal: green, yellow, red.
func paint(verdict status.Verdict, colour bool) string {
	text := strings.ToUpper(string(verdict))
	if !colour {
		return text
	}
	code := "31" // red: down or unknown
	switch verdict {
	case status.Healthy:
		code = "32"
	case status.Degraded:
		code = "33"
	}
	return "\x1b[1;" + code + "m" + text + "\x1b[0m"
}

func printStatus(w io.Writer, s status.Status, colour bool) {
	verdict := paint(s.Verdict, colour)
	// What is not known is left out, not printed blank.
	who := "this node"
	if s.Node.Name != "" {
		who = s.Node.Name
		if s.Node.Role != "" {
			who += " (" + s.Node.Role + ")"
		}
		if s.Node.Cluster != "" {
			who += " in cluster " + s.Node.Cluster
		}
	}
	fmt.Fprintf(w, "%s  %s: %s\n", verdict, who, reasonOrOK(s))
	for i, r := range s.Reasons {
		if i == 0 {
			continue
		}
		fmt.Fprintf(w, "         %s\n", r)
	}
	if s.Phase != "" {
		since := ""
		if !s.PhaseSince.IsZero() {
			since = " since " + s.PhaseSince.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "phase    %s%s\n", s.Phase, since)
	}
	var node []string
	if s.Node.ID != "" {
		node = append(node, "id "+s.Node.ID)
	}
	if s.Node.AdvertiseAddress != "" && s.Node.AdvertiseAddress != "invalid IP" {
		node = append(node, "address "+s.Node.AdvertiseAddress)
	}
	node = append(node, "agent "+cmp.Or(s.Node.Version, buildinfo.Version))
	if !s.StartedAt.IsZero() {
		node = append(node, "up "+time.Since(s.StartedAt).Round(time.Second).String())
	}
	fmt.Fprintf(w, "node     %s (source: %s)\n", strings.Join(node, ", "), s.Source)
	if len(s.Units) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "UNIT\tACTIVE\tSUB\tRESTARTS\tSINCE")
		for _, u := range s.Units {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", u.Name, u.ActiveState, u.SubState, u.NRestarts, ago(u.StateChangeTime))
		}
		tw.Flush()
		for _, u := range s.Units {
			if len(u.Journal) > 0 && u.ActiveState != units.Active {
				fmt.Fprintf(w, "\nlast lines of %s:\n", u.Name)
				for _, l := range u.Journal {
					fmt.Fprintf(w, "  %s\n", l)
				}
			}
		}
	}
	if len(s.Gossip) > 0 {
		fmt.Fprintln(w)
		printMembers(w, s.Gossip)
	}
	if s.Etcd != nil {
		fmt.Fprintf(w, "\netcd cluster %s, raft term %d index %d, db %d KiB\n", s.Etcd.ClusterID, s.Etcd.RaftTerm, s.Etcd.RaftIndex, s.Etcd.DBSize/1024)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MEMBER\tID\tROLE\tHEALTH\tDB\tRAFT TERM/INDEX\tPEER URLS")
		for _, m := range s.Etcd.Members {
			role := "voter"
			switch {
			case m.Leader:
				role = "leader"
			case m.Learner:
				role = "learner"
			case !m.Started:
				role = "not started"
			}
			health, db, raft := "healthy", fmt.Sprintf("%d KiB", m.DBSize/1024), fmt.Sprintf("%d/%d", m.RaftTerm, m.RaftIndex)
			if !m.Healthy {
				health, db, raft = "DOWN", "-", "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(m.Name), m.ID, role, health, db, raft, strings.Join(m.PeerURLs, ","))
		}
		tw.Flush()
		for _, m := range s.Etcd.Members {
			if !m.Healthy && m.Error != "" {
				fmt.Fprintf(w, "  %s: %s\n", orDash(m.Name), m.Error)
			}
		}
	}
	if len(s.APIServers) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "API SERVER\tURL\t/READYZ")
		for _, a := range s.APIServers {
			ready := "ready"
			if !a.Ready {
				ready = "NOT READY: " + a.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Node, a.URL, ready)
		}
		tw.Flush()
	}
	printControlPlane(w, s)
	printPlatform(w, s.Platform)
	printKubelet(w, s)
	printNetworkPolicy(w, s.NetworkPolicy)
	if c := s.Certificates; c != nil && c.Nearest != "" {
		fmt.Fprintf(w, "certificates    %d, the first to expire: %s on %s (in %s)\n", c.Count, c.Nearest,
			c.NearestNotAfter.UTC().Format(time.DateOnly), days(time.Until(c.NearestNotAfter)))
	}
	if sn := s.EtcdSnapshots; sn != nil {
		line := "none yet"
		if l := sn.Last; l != nil {
			line = fmt.Sprintf("%s (%s, %s, revision %d)", ago(l.Taken), l.Name, bytesIEC(l.Size), l.Revision)
		}
		sched := "scheduled snapshots off"
		if sn.IntervalSeconds > 0 {
			sched = fmt.Sprintf("every %s, keeping %d", sn.Interval(), sn.Retention)
		}
		fmt.Fprintf(w, "etcd snapshots  last %s; %d in %s, %s", line, sn.Count, sn.Dir, sched)
		if sn.Error != "" {
			fmt.Fprintf(w, "; FAILED: %s", sn.Error)
		}
		fmt.Fprintln(w)
	}
	if v := s.VIP; v != nil {
		fmt.Fprintf(w, "VIP             %s %s\n", v.Address, vipLine(v))
	}
	if r := s.LastRenewal; r != nil {
		fmt.Fprintf(w, "renewal         %s (%s): %d renewed, restarted %s", ago(r.At), r.Reason, len(r.Renewed), orDash(strings.Join(r.Restarted, ", ")))
		if r.Error != "" {
			fmt.Fprintf(w, "; FAILED: %s", r.Error)
		}
		fmt.Fprintln(w)
	}
}

// days prints a duration in whole days ("364d"), or hours below two days.
func days(d time.Duration) string {
	if d < 48*time.Hour {
		return d.Round(time.Hour).String()
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// printKubelet prints the node's kubelet side: its Node's readiness, the
// runtime, the pod network, the images and a worker's API load balancer.
func printKubelet(w io.Writer, s status.Status) {
	k := s.Kubelet
	if k == nil {
		return
	}
	fmt.Fprintln(w)
	switch {
	case k.Ready:
		fmt.Fprintln(w, "kubelet         Node Ready")
	case !k.KubeletStarted:
		fmt.Fprintln(w, "kubelet         not started")
	default:
		fmt.Fprintf(w, "kubelet         Node not Ready: %s\n", k.Reason)
	}
	if k.Runtime != "" {
		fmt.Fprintf(w, "runtime         %s\n", k.Runtime)
	}
	if k.PodCIDR != "" {
		backend := ""
		if k.Backend != "" {
			backend = " (" + k.Backend + ")"
		}
		fmt.Fprintf(w, "pod network     %s, %d route(s) to other nodes' pods%s\n", k.PodCIDR, len(k.Routes), backend)
	}
	if len(k.Images) > 0 {
		fmt.Fprintf(w, "images          %s\n", strings.Join(k.Images, ", "))
	}
	for _, e := range k.ImageErrors {
		fmt.Fprintf(w, "image error     %s\n", e)
	}
	if len(k.APILoadBalancer) > 0 {
		var eps []string
		for _, e := range k.APILoadBalancer {
			h := "unhealthy"
			if e.Healthy {
				h = "healthy"
			}
			eps = append(eps, fmt.Sprintf("%s %s (%d conns)", e.Address, h, e.Connections))
		}
		fmt.Fprintf(w, "API via         127.0.0.1:%d -> %s\n", bootstrap.APILoadBalancerPort, strings.Join(eps, ", "))
	}
	for _, p := range k.Preflight {
		fmt.Fprintf(w, "  %s\n", p)
	}
	if k.Error != "" {
		fmt.Fprintf(w, "  %s\n", k.Error)
	}
}

// printControlPlane prints the local API server's readiness and the
// cluster's last seeding pass.
func printControlPlane(w io.Writer, s status.Status) {
	if cp := s.ControlPlane; cp != nil {
		fmt.Fprintln(w)
		switch {
		case cp.Ready:
			fmt.Fprintf(w, "kube-apiserver  ready since %s\n", cp.ReadySince.UTC().Format(time.RFC3339))
		case cp.Readyz != "":
			fmt.Fprintf(w, "kube-apiserver  not ready: %s\n", cp.Readyz)
		default:
			fmt.Fprintln(w, "kube-apiserver  not ready")
		}
		var bins []string
		for _, b := range cp.Binaries {
			bins = append(bins, b.Name+" "+b.Version)
		}
		if len(bins) > 0 {
			fmt.Fprintf(w, "binaries        %s\n", strings.Join(bins, ", "))
		}
		if len(cp.Journal) > 0 {
			fmt.Fprintln(w, "last journal lines of the unhealthy unit:")
			for _, l := range cp.Journal {
				fmt.Fprintf(w, "  %s\n", l)
			}
		}
	}
	sd := s.Seed
	if sd == nil {
		return
	}
	switch {
	case !sd.Enabled:
		fmt.Fprintln(w, "seeding         off on this node (seed.enabled = false)")
	case sd.Seeder == "":
		fmt.Fprintln(w, "seeding         not done yet")
	default:
		var counts []string
		for _, r := range seed.Results {
			if n := sd.Counts[r]; n > 0 {
				counts = append(counts, fmt.Sprintf("%d %s", n, r))
			}
		}
		who := sd.Seeder
		if sd.Leader {
			who += " (this node)"
		}
		fmt.Fprintf(w, "seeding         by %s, %s: %s\n", who, ago(sd.Finished), strings.Join(counts, ", "))
	}
	for _, p := range sd.Problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
	if sd.Error != "" {
		fmt.Fprintf(w, "  %s\n", sd.Error)
	}
}

// printPlatform prints what runs of the seeded workloads.
func printPlatform(w io.Writer, p *status.PlatformStatus) {
	if p == nil {
		return
	}
	defer func() {
		for _, n := range p.NotSeeded {
			fmt.Fprintf(w, "  %s: %s\n", n.Object, n.Reason)
		}
	}()
	switch {
	case p.Error != "":
		fmt.Fprintf(w, "platform        cannot read the workloads: %s\n", p.Error)
		return
	case p.Workloads == 0:
		fmt.Fprintln(w, "platform        no seeded workload")
		return
	case p.Ready == p.Workloads:
		fmt.Fprintf(w, "platform        %d of %d seeded workloads available\n", p.Ready, p.Workloads)
		return
	}
	since := ""
	if !p.NotReadySince.IsZero() {
		since = ", not all since " + ago(p.NotReadySince)
	}
	fmt.Fprintf(w, "platform        %d of %d seeded workloads available%s (ecom-agent verify says more)\n", p.Ready, p.Workloads, since)
	for _, n := range p.NotReady {
		fmt.Fprintf(w, "  %s: %s\n", n.Object, n.Reason)
	}
}

// printNetworkPolicy prints the node's NetworkPolicy enforcement.
func printNetworkPolicy(w io.Writer, p *status.NetworkPolicyStatus) {
	switch {
	case p == nil:
	case p.Off:
		fmt.Fprintln(w, "netpol          off (network.policy = false): the cluster's CNI enforces NetworkPolicy, or nothing does")
	case p.Error != "":
		fmt.Fprintf(w, "netpol          NOT ENFORCED: %s\n", p.Error)
	default:
		last := ""
		if !p.LastSync.IsZero() {
			last = ", last full sync " + ago(p.LastSync)
		}
		fmt.Fprintf(w, "netpol          enforced by %s: %d policy chain(s), %d pod firewall chain(s)%s\n", p.Engine, p.PolicyChains, p.PodChains, last)
	}
}

// printMembers prints the gossip view as a table, like `consul members`.
func printMembers(w io.Writer, ms []status.GossipMember) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tROLE\tSTATE\tSINCE\tPHASE\tETCD CLUSTER\tAGENT")
	for _, m := range ms {
		phase := m.Phase
		if m.Error != "" {
			phase = "unreadable metadata: " + m.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Address, orDash(m.Role), m.State, ago(m.Since),
			orDash(phase), orDash(m.EtcdClusterID), orDash(m.Version))
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func reasonOrOK(s status.Status) string {
	if len(s.Reasons) == 0 {
		return "all checks pass"
	}
	return s.Reasons[0]
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

// vipLine says who holds the VIP, as the status's VIP line.
func vipLine(v *status.VIPStatus) string {
	var line string
	switch {
	case v.Held:
		line = fmt.Sprintf("held here on %s since %s", v.Interface, ago(v.Since))
	case v.Holder != "":
		line = "held by " + v.Holder
	default:
		line = "HELD BY NO NODE"
	}
	if !v.Candidate {
		line += "; this node does not stand for it (its API server is not ready)"
	}
	if v.Error != "" {
		line += "; FAILED: " + v.Error
	}
	return line
}
