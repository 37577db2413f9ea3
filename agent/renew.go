package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/hostfs"
	"github.com/ecom-platform/ecom-agent/pki"
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
	renewLockTimeout   = 15 * time.Minute
)

// RenewResult is what a renewal pass did.
type RenewResult struct {
	At        time.Time `json:"at"`
	Reason    string    `json:"reason"`
	Renewed   []string  `json:"renewed,omitempty"`
	Restarted []string  `json:"restarted,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// renewDue runs a renewal pass when a certificate is inside its renewal
// window or expired.
func (d *Daemon) renewDue(ctx context.Context) {
	sum := certSummary(d.d.Root, d.d.Config, d.d.Now())
	if sum == nil || sum.Due+sum.Expired == 0 {
		return
	}
	res := d.renew(ctx, nil, fmt.Sprintf("%d certificate(s) inside the renewal window", sum.Due+sum.Expired))
	if res.Error != "" {
		d.d.Log.Error("certificate renewal failed; retrying within the hour", "err", res.Error)
	}
}

// renew re-issues the named certificates (all leaves for "all"; none but
// those inside the renewal window for an empty list) and restarts the
// units that read them, holding the cluster's renewal lock. One pass runs
// at a time on a node.
func (d *Daemon) renew(ctx context.Context, names []string, reason string) RenewResult {
	res := RenewResult{At: d.d.Now(), Reason: reason}
	if !d.renewing.CompareAndSwap(false, true) {
		res.Error = "a renewal is already running on this node"
		return res
	}
	defer d.renewing.Store(false)
	err := d.renewLocked(ctx, names, &res)
	if err != nil {
		res.Error = err.Error()
	}
	d.mu.Lock()
	d.lastRenewal = &res
	d.mu.Unlock()
	d.refresh(ctx)
	return res
}

func (d *Daemon) renewLocked(ctx context.Context, names []string, res *RenewResult) error {
	if !d.d.Config.IsControlPlane() || !d.phase().EtcdServing() {
		return errors.New("certificates are renewed on a control-plane node whose etcd member serves; this node is " + string(d.phase()))
	}
	cli, err := localEtcdClient(d.d.Root, d.d.Config)
	if err != nil {
		return err
	}
	defer cli.Close()
	lctx, cancel := context.WithTimeout(ctx, renewLockTimeout)
	defer cancel()
	session, err := concurrency.NewSession(cli, concurrency.WithTTL(30), concurrency.WithContext(lctx))
	if err != nil {
		return fmt.Errorf("etcd session for the renewal lock: %w", err)
	}
	defer session.Close()
	mu := concurrency.NewMutex(session, renewLockKey)
	d.d.Log.Info("waiting for the cluster's certificate renewal lock", "reason", res.Reason)
	if err := mu.Lock(lctx); err != nil {
		return fmt.Errorf("the renewal lock (another node renewing for over %s?): %w", renewLockTimeout, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = mu.Unlock(uctx)
	}()

	if err := d.setAsideForRenewal(names); err != nil {
		return err
	}
	r := bootstrap.NewRenderer(d.d.Config, d.d.Root, d.d.Log)
	r.SkipUnitFiles = true
	r.Membership = d.etcdDecision().Membership()
	written, err := r.Run(ctx)
	if err != nil {
		return fmt.Errorf("re-render: %w", err)
	}
	for _, w := range written {
		credential := strings.HasSuffix(w.Path, ".crt") || strings.HasSuffix(w.Path, ".conf") || strings.HasSuffix(w.Path, ".pem")
		if credential && w.Result != hostfs.Unchanged {
			res.Renewed = append(res.Renewed, w.Path)
		}
	}
	all := append([]string{bootstrap.EtcdUnit}, controlPlaneUnits...)
	for _, unit := range bootstrap.ChangedUnits(written, all) {
		d.d.Log.Info("restarting for its renewed certificates", "unit", unit)
		jctx, cancel := context.WithTimeout(ctx, unitJobTimeout)
		err := d.sd.Restart(jctx, unit)
		cancel()
		if err != nil {
			return fmt.Errorf("restart %s: %w", unit, err)
		}
		res.Restarted = append(res.Restarted, unit)
		if err := d.awaitHealthy(ctx, unit); err != nil {
			return err
		}
	}
	d.d.Log.Info("certificates renewed", "renewed", strings.Join(res.Renewed, ","), "restarted", strings.Join(res.Restarted, ","))
	return nil
}

// setAsideForRenewal moves the named leaf certificates (or kubeconfigs) to
// NAME.old so the renderer issues new ones. CAs are never renewed.
func (d *Daemon) setAsideForRenewal(names []string) error {
	if len(names) == 0 {
		return nil
	}
	list, err := bootstrap.CertInventory(d.d.Root, bootstrap.PKIOptions(d.d.Config))
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
			if err := d.d.Root.Rename(p, p+".old"); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("set %s aside: %w", p, err)
			}
		}
	}
	return nil
}

// awaitHealthy waits until a restarted unit serves again: etcd answers,
// or kube-apiserver is ready; other units just need to be active.
func (d *Daemon) awaitHealthy(ctx context.Context, unit string) error {
	deadline := d.d.Now().Add(d.d.Config.APIServer.ReadyTimeout.Duration)
	var last error
	for d.d.Now().Before(deadline) {
		switch unit {
		case bootstrap.EtcdUnit:
			cli, err := localEtcdClient(d.d.Root, d.d.Config)
			if err == nil {
				_, err = etcdStatus(ctx, cli)
				cli.Close()
			}
			last = err
		case bootstrap.APIServerUnit:
			cfg, err := restConfig(d.d.Root, bootstrap.SuperAdminKubeconfig)
			if err == nil {
				err = probeReadyz(ctx, cfg)
			}
			last = err
		default:
			st, err := d.sd.Status(ctx, unit)
			if err == nil && st.ActiveState != "active" {
				err = fmt.Errorf("%s is %s", unit, st.ActiveState)
			}
			last = err
		}
		if last == nil {
			return nil
		}
		d.beat()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("%s not healthy after its restart: %v", unit, last)
}
