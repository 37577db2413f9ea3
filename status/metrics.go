package status

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/ecom-platform/ecom-agent/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// statusCollector turns the daemon's last published status into metrics
// at scrape time, so metrics and `ecom-agent status` never disagree.
type statusCollector struct {
	status func() Status
}

var (
	descInfo      = prometheus.NewDesc("ecom_agent_info", "The agent's identity: 1, labelled with node, role, cluster and version.", []string{"node", "role", "cluster", "version"}, nil)
	descVerdict   = prometheus.NewDesc("ecom_agent_verdict", "The node's verdict: 0 healthy, 1 degraded, 2 down (as the status command's exit code).", nil, nil)
	descPhase     = prometheus.NewDesc("ecom_agent_phase", "1 for the node's current bootstrap phase.", []string{"phase"}, nil)
	descUptime    = prometheus.NewDesc("ecom_agent_start_time_seconds", "When the daemon started, as a Unix time.", nil, nil)
	descGossip    = prometheus.NewDesc("ecom_agent_gossip_members", "Nodes in the gossip view, by state.", []string{"state"}, nil)
	descEtcd      = prometheus.NewDesc("ecom_agent_etcd_members", "etcd members as this node sees them, by kind (voter, learner, unstarted).", []string{"kind"}, nil)
	descLeader    = prometheus.NewDesc("ecom_agent_etcd_has_leader", "1 when the local etcd member knows a leader.", nil, nil)
	descDBSize    = prometheus.NewDesc("ecom_agent_etcd_db_size_bytes", "Size of the local etcd member's database.", nil, nil)
	descUnit      = prometheus.NewDesc("ecom_agent_unit_active", "1 when a unit the agent manages is active.", []string{"unit"}, nil)
	descRestarts  = prometheus.NewDesc("ecom_agent_unit_restarts", "How many times systemd restarted a unit the agent manages.", []string{"unit"}, nil)
	descAPIReady  = prometheus.NewDesc("ecom_agent_apiserver_ready", "1 when the local kube-apiserver answers /readyz.", nil, nil)
	descSeed      = prometheus.NewDesc("ecom_agent_seed_objects", "Objects of the last seeding pass, by result.", []string{"result"}, nil)
	descSeeder    = prometheus.NewDesc("ecom_agent_seed_leader", "1 while this node holds the seeding Lease.", nil, nil)
	descCertFirst = prometheus.NewDesc("ecom_agent_certificate_expiry_timestamp_seconds", "When the node's first certificate to expire expires, as a Unix time.", []string{"name"}, nil)
	descCertDue   = prometheus.NewDesc("ecom_agent_certificates", "The node's certificates, by state (due: inside the renewal window).", []string{"state"}, nil)
	descCertLeft  = prometheus.NewDesc("ecom_agent_certificate_expiry_seconds", "Seconds until each certificate expires (negative once expired).", []string{"name"}, nil)
	descJoin      = prometheus.NewDesc("ecom_agent_join_duration_seconds", "How long the running daemon took to bring the node to its target phase.", nil, nil)
	descPlatform  = prometheus.NewDesc("ecom_agent_platform_workloads", "The seeded Deployments, StatefulSets and DaemonSets, by state (ready: available).", []string{"state"}, nil)
	descOverdue   = prometheus.NewDesc("ecom_agent_platform_overdue", "1 once a seeded workload has been not available for the grace period (the verdict is degraded).", nil, nil)
	descNetpol    = prometheus.NewDesc("ecom_agent_network_policy_enforcing", "1 when this node enforces NetworkPolicy (the engine runs and the kernel holds its hooks); absent with network.policy = false.", nil, nil)
	descSnapTime  = prometheus.NewDesc("ecom_agent_etcd_snapshot_timestamp_seconds", "When this node's newest etcd snapshot was taken, as a Unix time.", nil, nil)
	descSnapSize  = prometheus.NewDesc("ecom_agent_etcd_snapshot_size_bytes", "The size of this node's newest etcd snapshot.", nil, nil)
	descSnapRev   = prometheus.NewDesc("ecom_agent_etcd_snapshot_revision", "The etcd revision of this node's newest snapshot.", nil, nil)
	descSnapLate  = prometheus.NewDesc("ecom_agent_etcd_snapshot_overdue", "1 once this node has no etcd snapshot younger than twice the interval (the verdict is degraded).", nil, nil)
	descVIPHeld   = prometheus.NewDesc("ecom_agent_vip_held", "1 while this node holds the control plane's virtual IP.", nil, nil)
	descVIPHolder = prometheus.NewDesc("ecom_agent_vip_holder_known", "1 while some control-plane node holds the virtual IP, as this node's etcd says.", nil, nil)
	descChanges   = prometheus.NewDesc("ecom_agent_etcd_membership_changes_total", "etcd membership changes this daemon made since it started, by action.", []string{"action"}, nil)
)

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descVerdict, descPhase, descUptime, descGossip, descEtcd, descLeader,
		descDBSize, descUnit, descRestarts, descAPIReady, descSeed, descSeeder, descCertFirst, descCertDue,
		descCertLeft, descJoin, descChanges, descPlatform, descOverdue, descNetpol, descSnapTime, descSnapSize, descSnapRev, descSnapLate, descVIPHeld, descVIPHolder} {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge(descInfo, 1, s.Node.Name, s.Node.Role, s.Node.Cluster, s.Node.Version)
	verdict := 2.0
	switch s.Verdict {
	case Healthy:
		verdict = 0
	case Degraded:
		verdict = 1
	}
	gauge(descVerdict, verdict)
	if s.Phase != "" {
		gauge(descPhase, 1, string(s.Phase))
	}
	if !s.StartedAt.IsZero() {
		gauge(descUptime, float64(s.StartedAt.Unix()))
	}
	states := map[string]int{}
	for _, g := range s.Gossip {
		states[g.State]++
	}
	for st, n := range states {
		gauge(descGossip, float64(n), st)
	}
	if e := s.Etcd; e != nil {
		kinds := map[string]int{"voter": 0, "learner": 0, "unstarted": 0}
		for _, m := range e.Members {
			switch {
			case !m.Started:
				kinds["unstarted"]++
			case m.Learner:
				kinds["learner"]++
			default:
				kinds["voter"]++
			}
		}
		for k, n := range kinds {
			gauge(descEtcd, float64(n), k)
		}
		gauge(descLeader, flag(e.Leader != ""))
		gauge(descDBSize, float64(e.DBSize))
	}
	for _, u := range s.Units {
		gauge(descUnit, flag(u.ActiveState == units.Active), u.Name)
		gauge(descRestarts, float64(u.NRestarts), u.Name)
	}
	if cp := s.ControlPlane; cp != nil {
		gauge(descAPIReady, flag(cp.Ready))
	}
	if p := s.Platform; p != nil && p.Error == "" {
		gauge(descPlatform, float64(p.Ready), "ready")
		gauge(descPlatform, float64(p.Workloads-p.Ready), "not_ready")
		gauge(descOverdue, flag(p.Overdue))
	}
	if np := s.NetworkPolicy; np != nil && !np.Off {
		gauge(descNetpol, flag(np.Enforcing))
	}
	if sn := s.EtcdSnapshots; sn != nil {
		gauge(descSnapLate, flag(sn.Overdue))
		if l := sn.Last; l != nil {
			gauge(descSnapTime, float64(l.Taken.Unix()))
			gauge(descSnapSize, float64(l.Size))
			gauge(descSnapRev, float64(l.Revision))
		}
	}
	if v := s.VIP; v != nil {
		gauge(descVIPHeld, flag(v.Held))
		gauge(descVIPHolder, flag(v.Holder != ""))
	}
	if sd := s.Seed; sd != nil {
		for r, n := range sd.Counts {
			gauge(descSeed, float64(n), r)
		}
		gauge(descSeeder, flag(sd.Leader))
	}
	if cs := s.Certificates; cs != nil {
		if cs.Nearest != "" {
			gauge(descCertFirst, float64(cs.NearestNotAfter.Unix()), cs.Nearest)
		}
		gauge(descCertDue, float64(cs.Due), "due")
		gauge(descCertDue, float64(cs.Expired), "expired")
		gauge(descCertDue, float64(cs.Unreadable), "unreadable")
		gauge(descCertDue, float64(cs.Count), "total")
		for _, e := range cs.Expiries {
			gauge(descCertLeft, time.Until(e.NotAfter).Seconds(), e.Name)
		}
	}
	if s.JoinSeconds > 0 {
		gauge(descJoin, s.JoinSeconds)
	}
	for _, a := range []string{"add-learner", "promote", "remove"} {
		ch <- prometheus.MustNewConstMetric(descChanges, prometheus.CounterValue, float64(s.MembershipChanges[a]), a)
	}
}

// MetricsHandler serves the agent's metrics (from status) with the Go
// runtime's and the process's.
func MetricsHandler(status func() Status) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		statusCollector{status: status},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// stuckAfter is how long the daemon may go without progress before
// /healthz says it is stuck (systemd's watchdog restarts it at 2 min).
const stuckAfter = time.Minute

// healthHandlers returns /healthz, the agent's liveness: 200 while its
// loops make progress, 503 once they stalled for stuckAfter; and /readyz,
// the node's verdict: 200 when healthy, 503 with the reasons otherwise.
func healthHandlers(status func() Status, heartbeat func() time.Time) (healthz, readyz http.Handler) {
	healthz = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if since := time.Since(heartbeat()); since > stuckAfter {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "stuck: no progress for %s\n", since.Round(time.Second))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	readyz = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		st := status()
		if st.Verdict != Healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, cmp.Or(st.Verdict, Down))
		for _, r := range st.Reasons {
			fmt.Fprintln(w, "- "+r)
		}
	})
	return healthz, readyz
}

// ServeMetrics listens on addr and serves /metrics, /healthz, /readyz
// (and Go's profiler when pprof is set) until ctx ends.
func ServeMetrics(ctx context.Context, addr string, pprofOn bool, status func() Status, heartbeat func() time.Time, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", MetricsHandler(status))
	healthz, readyz := healthHandlers(status, heartbeat)
	mux.Handle("/healthz", healthz)
	mux.Handle("/readyz", readyz)
	if pprofOn {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	return nil
}
