package logging

import (
	"log/slog"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/google/go-cmp/cmp"
)

type sent struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

func TestJournalHandlerFields(t *testing.T) {
	var got []sent
	h := NewJournalHandler(slog.LevelInfo)
	h.send = func(msg string, p journal.Priority, vars map[string]string) error {
		got = append(got, sent{msg, p, vars})
		return nil
	}
	log := slog.New(h).With("node", "cp-1").WithGroup("etcd")
	log.Debug("hidden")
	log.Warn("member unhealthy", "member-id", "8e9e05c52164694d", "message", "clash", slog.Group("raft", "term", 4))
	want := []sent{{
		msg: "member unhealthy member-id=8e9e05c52164694d message=clash raft={term=4}",
		pri: journal.PriWarning,
		vars: map[string]string{
			"NODE":              "cp-1",
			"ETCD_MEMBER_ID":    "8e9e05c52164694d",
			"ETCD_MESSAGE":      "clash",
			"ETCD_RAFT_TERM":    "4",
			"SYSLOG_IDENTIFIER": "ecom-agent",
		},
	}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(sent{})); diff != "" {
		t.Fatalf("journal entries (-want +got):\n%s", diff)
	}
}

func TestFieldNames(t *testing.T) {
	for in, want := range map[string]string{
		"phase": "PHASE", "unit.name": "UNIT_NAME", "_x": "X", "9lives": "F_9LIVES", "": "F_",
	} {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
	if !reserved("MESSAGE") {
		t.Error("MESSAGE is reserved")
	}
}
