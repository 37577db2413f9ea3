package units

import (
	"context"
	"log/slog"
	"slices"
)

// Starter is what BringUp asks of systemd; *Manager is one.
type Starter interface {
	Status(ctx context.Context, name string) (UnitStatus, error)
	Start(ctx context.Context, name string) error
	Restart(ctx context.Context, name string) error
}

// BringUp starts a unit that is not running, or restarts one that runs
// while it is among changed (its unit file or an input changed). The job
// runs in the background, bounded by JobWait; its result comes on the
// returned channel, which is nil when the unit runs current and there is
// nothing to do (a nil channel never delivers in a select).
func BringUp(ctx context.Context, sd Starter, log *slog.Logger, name string, changed []string) (<-chan error, error) {
	sctx, cancel := context.WithTimeout(ctx, JobWait)
	st, err := sd.Status(sctx, name)
	cancel()
	if err != nil {
		return nil, err
	}
	var job func(context.Context, string) error
	switch {
	case st.ActiveState == Active && slices.Contains(changed, name):
		log.Info("restarting: its config changed", "unit", name)
		job = sd.Restart
	case st.ActiveState != Active:
		log.Info("starting", "unit", name)
		job = sd.Start
	default:
		return nil, nil
	}
	done := make(chan error, 1)
	go func() {
		jctx, cancel := context.WithTimeout(ctx, JobWait)
		defer cancel()
		done <- job(jctx, name)
	}()
	return done, nil
}
