package recovery

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ecom-platform/ecom-agent/bootstrap"
	"github.com/ecom-platform/ecom-agent/config/configtest"
	"github.com/ecom-platform/ecom-agent/nodestate"
	"github.com/ecom-platform/ecom-agent/units"
)

// systemd records what recover asks of it.
type systemd struct{ calls []string }

func (s *systemd) Status(context.Context, string) (units.UnitStatus, error) {
	return units.UnitStatus{}, nil
}
func (s *systemd) Stop(_ context.Context, n string) error {
	s.calls = append(s.calls, "stop "+n)
	return nil
}
func (s *systemd) Start(_ context.Context, n string) error {
	s.calls = append(s.calls, "start "+n)
	return nil
}

// Recover refuses, touching nothing, on a worker, on a node whose member
// never served, and on one whose data is gone.
func TestRecoverRefuses(t *testing.T) {
	cp := configtest.ControlPlane(t)
	for _, tc := range []struct {
		name  string
		state func(*nodestate.Store) error
		data  bool
		want  string
	}{
		{"never served", func(s *nodestate.Store) error {
			return s.Update(func(st *nodestate.State) error {
				st.Etcd = &nodestate.EtcdDecision{State: bootstrap.EtcdStartNew, Peers: map[string]string{"cp-1": "https://10.77.0.11:2380"}}
				return nil
			})
		}, true, "never served"},
		{"data gone", func(s *nodestate.Store) error {
			return s.Update(func(st *nodestate.State) error {
				st.Etcd = &nodestate.EtcdDecision{State: bootstrap.EtcdStartNew, Served: time.Now(), Peers: map[string]string{"cp-1": "https://10.77.0.11:2380"}}
				return nil
			})
		}, false, "holds no etcd data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := configtest.Root(t)
			store, err := nodestate.Open(root, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.state(store); err != nil {
				t.Fatal(err)
			}
			if tc.data {
				if _, err := root.WriteFile(bootstrap.EtcdDataDir+"/member/wal/0000000000000000-0000000000000000.wal", []byte("wal"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			sd := &systemd{}
			_, err = Recover(context.Background(), Options{Config: cp, Root: root, Systemd: sd})
			if err == nil || !strings.Contains(err.Error(), tc.want) || len(sd.calls) != 0 {
				t.Errorf("%v, systemd %v; want %q and nothing done", err, sd.calls, tc.want)
			}
		})
	}
	w := configtest.Worker(t)
	if _, err := Recover(context.Background(), Options{Config: w, Root: configtest.Root(t), Systemd: &systemd{}}); err == nil || !strings.Contains(err.Error(), "a worker runs no etcd member") {
		t.Errorf("on a worker: %v", err)
	}
}
