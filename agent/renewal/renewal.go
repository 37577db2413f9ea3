// Package renewal is the component that re-issues a control-plane node's
// leaf certificates inside their renewal window, hourly and on demand
// (`ecom-agent certs renew`).
package renewal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecom-platform/ecom-agent/agent/component"
	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config"
	"github.com/ecom-platform/ecom-agent/etcdclient"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/kubeclient"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/pki"
	"github.com/ecom-platform/ecom-agent/status"
	"github.com/ecom-platform/ecom-agent/status/collect"
	"github.com/ecom-platform/ecom-agent/units"
)

// Certificate renewal: the daemon re-issues leaf certificates inside the
// renewal window by itself (checked every renewCheckInterval), and on
// demand (`ecom-agent certs renew`). Each pass holds a cluster-wide etcd
// lock, so control-plane nodes restart their units one at a time and
// quorum and API availability hold; it waits for etcd and the API server
// to be healthy again before it lets the next node go.
const (
	renewCheckInterval = time.Hour
	renewLockKey       = "/ecom-agent/locks/renew-certificates"
)

// Name is the component's name.
const Name = "renewal"

// Systemd is what renewal asks of systemd.
type Systemd interface {
	Restart(ctx context.Context, name string) error
	Status(ctx context.Context, name string) (units.UnitStatus, error)
}

// Deps is what renewal is built from.
type Deps struct {
	Config  *config.Config
	Root    *hostfs.Root
	Log     *slog.Logger
	Store   *nodestate.Store
	Systemd Systemd
	Now     func() time.Time
	// Refreshed is called after a pass, so the status shows it at once.
	Refreshed func(ctx context.Context)
}

// Renewal runs renewal passes, one at a time on a node.
type Renewal struct {
	d         Deps
	renewing  atomic.Bool
	mu        sync.Mutex
	last      *status.RenewResult
	lastCheck time.Time
}

var (
	_ component.Component = (*Renewal)(nil)
	_ component.Reporter  = (*Renewal)(nil)
)

// New returns the component. The first hourly check comes an hour after
// the start: the node's render has just re-issued what is inside the
// renewal window.
func New(d Deps) *Renewal {
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Renewal{d: d, lastCheck: d.Now()}
}

// Name names the component.
func (r *Renewal) Name() string { return Name }

// Step runs the hourly check: a pass when a certificate is inside its
// renewal window or expired.
func (r *Renewal) Step(ctx context.Context) error {
	r.mu.Lock()
	due := r.d.Now().Sub(r.lastCheck) >= renewCheckInterval
	if due {
		r.lastCheck = r.d.Now()
	}
	r.mu.Unlock()
	if due {
		r.renewDue(ctx)
	}
	return nil
}

// Ready is always true: nothing waits for renewal.
func (r *Renewal) Ready() bool { return true }

// Stop has nothing to release.
func (r *Renewal) Stop(context.Context) error { return nil }

// Report adds the last pass.
func (r *Renewal) Report(s *status.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.LastRenewal = r.last
}

// renewDue runs a renewal pass when a certificate is inside its renewal
// window or expired.
func (r *Renewal) renewDue(ctx context.Context) {
	sum := collect.CertSummary(r.d.Root, r.d.Config, r.d.Now())
	if sum == nil || sum.Due+sum.Expired == 0 {
		return
	}
	res := r.Renew(ctx, nil, fmt.Sprintf("%d certificate(s) inside the renewal window", sum.Due+sum.Expired))
	if res.Error != "" {
		r.d.Log.Error("certificate renewal failed; retrying within the hour", "err", res.Error)
	}
}

// Renew re-issues the named certificates (all leaves for "all"; none but
// those inside the renewal window for an empty list) and restarts the
// units that read them, holding the cluster's renewal lock. One pass runs
// at a time on a node.
func (r *Renewal) Renew(ctx context.Context, names []string, reason string) status.RenewResult {
	res := status.RenewResult{At: r.d.Now(), Reason: reason}
	if !r.renewing.CompareAndSwap(false, true) {
		res.Error = "a renewal is already running on this node"
		return res
	}
	defer r.renewing.Store(false)
	err := r.renewLocked(ctx, names, &res)
	if err != nil {
		res.Error = err.Error()
	}
	r.mu.Lock()
	r.last = &res
	r.mu.Unlock()
	if r.d.Refreshed != nil {
		r.d.Refreshed(ctx)
	}
	return res
}

func (r *Renewal) renewLocked(ctx context.Context, names []string, res *status.RenewResult) error {
	phase := r.d.Store.Phase()
	if !r.d.Config.IsControlPlane() || !phase.EtcdServing() {
		return errors.New("certificates are renewed on a control-plane node whose etcd member serves; this node is " + string(phase))
	}
	cli, err := etcdclient.Local(r.d.Root, r.d.Config)
	if err != nil {
		return err
	}
	defer cli.Close()
	lctx, cancel := context.WithTimeout(ctx, status.RenewLockTimeout)
	defer cancel()
	session, err := concurrency.NewSession(cli, concurrency.WithTTL(30), concurrency.WithContext(lctx))
	if err != nil {
		return fmt.Errorf("etcd session for the renewal lock: %w", err)
	}
	defer session.Close()
	mu := concurrency.NewMutex(session, renewLockKey)
	r.d.Log.Info("waiting for the cluster's certificate renewal lock", "reason", res.Reason)
	if err := mu.Lock(lctx); err != nil {
		return fmt.Errorf("the renewal lock (another node renewing for over %s?): %w", status.RenewLockTimeout, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = mu.Unlock(uctx)
	}()

	if err := r.setAsideForRenewal(names); err != nil {
		return err
	}
	rd := bootstrap.NewRenderer(r.d.Config, r.d.Root, r.d.Log)
	rd.SkipUnitFiles = true
	rd.Membership = r.d.Store.Etcd().Membership()
	written, err := rd.Run(ctx)
	if err != nil {
		return fmt.Errorf("re-render: %w", err)
	}
	for _, w := range written {
		credential := strings.HasSuffix(w.Path, ".crt") || strings.HasSuffix(w.Path, ".conf") || strings.HasSuffix(w.Path, ".pem")
		if credential && w.Result != hostfs.Unchanged {
			res.Renewed = append(res.Renewed, w.Path)
		}
	}
	all := slices.Concat(bootstrap.UnitsOf(r.d.Config, bootstrap.GroupEtcd), bootstrap.UnitsOf(r.d.Config, bootstrap.GroupControlPlane))
	for _, unit := range bootstrap.ChangedUnits(written, all) {
		r.d.Log.Info("restarting for its renewed certificates", "unit", unit)
		jctx, cancel := context.WithTimeout(ctx, units.JobWait)
		err := r.d.Systemd.Restart(jctx, unit)
		cancel()
		if err != nil {
			return fmt.Errorf("restart %s: %w", unit, err)
		}
		res.Restarted = append(res.Restarted, unit)
		if err := r.awaitHealthy(ctx, unit); err != nil {
			return err
		}
	}
	r.d.Log.Info("certificates renewed", "renewed", strings.Join(res.Renewed, ","), "restarted", strings.Join(res.Restarted, ","))
	return nil
}

// setAsideForRenewal moves the named leaf certificates (or kubeconfigs) to
// NAME.old so the renderer issues new ones. CAs are never renewed.
func (r *Renewal) setAsideForRenewal(names []string) error {
	if len(names) == 0 {
		return nil
	}
	list, err := bootstrap.CertInventory(r.d.Root, bootstrap.PKIOptions(r.d.Config))
	if err != nil {
		return err
	}
	byName := map[string]pki.CertStatus{}
	var leaves []string
	for _, st := range list {
		byName[st.Name] = st
		if !st.CA {
			leaves = append(leaves, st.Name)
		}
	}
	if slices.Contains(names, "all") {
		names = leaves
	}
	for _, n := range names {
		st, ok := byName[n]
		switch {
		case !ok:
			return fmt.Errorf("no certificate named %q here; `ecom-agent certs check-expiration` lists them: %s", n, strings.Join(leaves, ", "))
		case st.CA:
			return fmt.Errorf("%s is a CA: CAs are never renewed by the agent (every certificate of the cluster chains to it)", n)
		}
		paths := []string{st.Path}
		if strings.HasSuffix(st.Path, ".crt") {
			paths = append(paths, strings.TrimSuffix(st.Path, ".crt")+".key")
		}
		for _, p := range paths {
			if err := r.d.Root.Rename(p, p+".old"); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("set %s aside: %w", p, err)
			}
		}
	}
	return nil
}

// awaitHealthy waits until a restarted unit serves again: etcd answers,
// or kube-apiserver is ready; other units just need to be active.
func (r *Renewal) awaitHealthy(ctx context.Context, unit string) error {
	deadline := r.d.Now().Add(r.d.Config.APIServer.ReadyTimeout.Duration)
	var last error
	for r.d.Now().Before(deadline) {
		switch unit {
		case bootstrap.EtcdUnit:
			cli, err := etcdclient.Local(r.d.Root, r.d.Config)
			if err == nil {
				_, err = etcdclient.Status(ctx, cli)
				cli.Close()
			}
			last = err
		case bootstrap.APIServerUnit:
			cfg, err := kubeclient.RESTConfig(r.d.Root, bootstrap.SuperAdminKubeconfig)
			if err == nil {
				err = kubeclient.Readyz(ctx, cfg)
			}
			last = err
		default:
			st, err := r.d.Systemd.Status(ctx, unit)
			if err == nil && st.ActiveState != units.Active {
				err = fmt.Errorf("%s is %s", unit, st.ActiveState)
			}
			last = err
		}
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("%s not healthy after its restart: %v", unit, last)
}
