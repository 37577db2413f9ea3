// Package units renders the systemd service units ecom-agent runs its
// components as (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet and the agent itself) and manages them over
// systemd's D-Bus API: it writes unit files through hostfs, reloads systemd
// only when a file changed, enables, starts, restarts, stops and removes
// units, and reads their state and journal.
//
// ecom-agent never supervises processes itself: restarting a crashed
// component, rate-limiting restarts and logging are systemd's job.
package units

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
)

// UnitDir is the directory unit files and drop-in directories are written to.
const UnitDir = "/etc/systemd/system"

// Infinity, as a timeout, renders as systemd's "infinity": no timeout.
const Infinity time.Duration = math.MaxInt64

// ServiceType is a service's Type=: how systemd decides it has started.
type ServiceType string

// The service types components use.
const (
	// TypeSimple considers the service started as soon as it is forked.
	TypeSimple ServiceType = "simple"
	// TypeExec considers the service started once its binary is executed,
	// so a missing binary fails the start job.
	TypeExec ServiceType = "exec"
	// TypeNotify waits for the service's sd_notify READY=1 (etcd, kubelet).
	TypeNotify ServiceType = "notify"
)

// RestartPolicy is a service's Restart=.
type RestartPolicy string

// The restart policies components use.
const (
	RestartNo        RestartPolicy = "no"
	RestartOnFailure RestartPolicy = "on-failure"
	RestartAlways    RestartPolicy = "always"
)

// KillMode is a service's KillMode=: which processes stopping it kills.
type KillMode string

// The kill modes components use.
const (
	KillControlGroup KillMode = "control-group"
	KillMixed        KillMode = "mixed"
	// KillProcess kills only the main process, leaving the rest of the
	// cgroup alone, like k3s does so containers survive a kubelet restart.
	KillProcess KillMode = "process"
)

// Spec describes a service unit. Zero fields are left out of the unit file,
// so systemd's defaults apply.
type Spec struct {
	// Name is the unit name, "etcd.service".
	Name string

	// [Unit]
	Description   string
	Documentation []string // URLs
	Wants         []string
	Requires      []string
	After         []string
	Before        []string
	// ConditionPathExists skips starting the unit (without failing it)
	// unless each path exists; a leading "!" negates the condition.
	ConditionPathExists []string
	// StartLimit rate-limits starts; nil keeps systemd's default.
	StartLimit *StartLimit

	// [Service]
	Type ServiceType
	// ExecStartPre commands run, in order, before ExecStart.
	ExecStartPre []Command
	// ExecStart is the argv of the main process. argv[0] must be an
	// absolute path; every argument is quoted as systemd needs and written
	// on a line of its own.
	ExecStart []string
	// Environment is passed to every command, written sorted by name.
	Environment map[string]string
	// EnvironmentFiles are read for more variables; a leading "-" makes a
	// file optional.
	EnvironmentFiles []string
	WorkingDirectory string
	// RuntimeDirectory is a directory under /run that systemd creates
	// before the service starts and removes after it stops.
	RuntimeDirectory string
	Restart          RestartPolicy
	RestartDelay     time.Duration
	// StartTimeout and StopTimeout may be Infinity.
	StartTimeout time.Duration
	StopTimeout  time.Duration
	// Watchdog is WatchdogSec=: a Type=notify service must send
	// WATCHDOG=1 at least this often or systemd restarts it.
	Watchdog time.Duration
	// RestartPreventExitStatus lists exit codes after which systemd does
	// not restart the service (a config error needs a human, not a loop).
	RestartPreventExitStatus []int
	LimitNOFILE              uint64
	// MemoryMax and TasksMax cap the service's cgroup (0: no cap): a
	// service that leaks or is flooded is stopped by the kernel before
	// the host is.
	MemoryMax uint64
	TasksMax  uint64
	KillMode  KillMode
	// Delegate gives the service its own cgroup subtree (kubelet and the
	// container runtime manage cgroups below it).
	Delegate bool

	// [Install]
	// WantedBy names the targets that pull the unit in when enabled,
	// usually "multi-user.target". A unit without it cannot be enabled.
	WantedBy []string

	// DropIns are written to /etc/systemd/system/NAME.d/. Drop-ins there
	// that ecom-agent did not write (`systemctl edit`) are left alone.
	DropIns []DropIn
}

// StartLimit is StartLimitIntervalSec= and StartLimitBurst=: at most Burst
// starts within Interval, after which the unit fails for good. A zero
// Interval turns rate limiting off, which units that must be restarted
// forever, like kubelet, want.
type StartLimit struct {
	Interval time.Duration
	Burst    int // 0 keeps systemd's default
}

// Command is one ExecStartPre= command.
type Command struct {
	// Argv is the command; argv[0] must be an absolute path.
	Argv []string
	// IgnoreFailure makes the unit start even if the command fails (the
	// "-" prefix).
	IgnoreFailure bool
}

// DropIn is a drop-in file for a unit.
type DropIn struct {
	// Name is the file name, "10-ecom-agent.conf"; it must end in ".conf".
	Name    string
	Options []*unit.UnitOption
}

// Path returns the logical path of the unit file.
func (s *Spec) Path() string { return unitFilePath(s.Name) }

// unitFilePath returns the logical path of the file of unit name.
func unitFilePath(name string) string { return path.Join(UnitDir, name) }

// DropInDir returns the logical path of the unit's drop-in directory.
func DropInDir(name string) string { return path.Join(UnitDir, name+".d") }

var (
	unitNameRE = regexp.MustCompile(`^[A-Za-z0-9:_.\\@-]+\.(service|target|socket|mount|path|timer|slice|scope|device|swap)$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// validUnitName reports whether name is a complete unit name.
func validUnitName(name string) bool {
	return len(name) <= 255 && unitNameRE.MatchString(name)
}

// validate checks what Render cannot express or systemd would refuse.
func (s *Spec) validate() error {
	if !validUnitName(s.Name) || !strings.HasSuffix(s.Name, ".service") {
		return fmt.Errorf("invalid service unit name %q", s.Name)
	}
	if len(s.ExecStart) == 0 {
		return fmt.Errorf("ExecStart is empty")
	}
	for _, deps := range [][]string{s.Wants, s.Requires, s.After, s.Before, s.WantedBy} {
		for _, d := range deps {
			if !validUnitName(d) {
				return fmt.Errorf("invalid unit name %q in dependencies", d)
			}
		}
	}
	switch s.Type {
	case "", TypeSimple, TypeExec, TypeNotify:
	default:
		return fmt.Errorf("unsupported Type %q", s.Type)
	}
	switch s.Restart {
	case "", RestartNo, RestartOnFailure, RestartAlways:
	default:
		return fmt.Errorf("unsupported Restart %q", s.Restart)
	}
	switch s.KillMode {
	case "", KillControlGroup, KillMixed, KillProcess:
	default:
		return fmt.Errorf("unsupported KillMode %q", s.KillMode)
	}
	for k := range s.Environment {
		if !envNameRE.MatchString(k) {
			return fmt.Errorf("invalid environment variable name %q", k)
		}
	}
	seen := map[string]bool{}
	for _, d := range s.DropIns {
		if !validDropInName(d.Name) {
			return fmt.Errorf("invalid drop-in name %q: want a plain file name ending in .conf", d.Name)
		}
		if seen[d.Name] {
			return fmt.Errorf("drop-in %q given twice", d.Name)
		}
		seen[d.Name] = true
	}
	return nil
}

func validDropInName(name string) bool {
	return strings.HasSuffix(name, ".conf") && len(name) > len(".conf") &&
		!strings.ContainsAny(name, "/\x00") && !strings.HasPrefix(name, ".")
}
