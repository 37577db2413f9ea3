package gossip

import (
	"bytes"
	"log"
	"log/slog"
	"strings"
	"testing"
)

func TestLogBridge(t *testing.T) {
	var out bytes.Buffer
	var suspects []string
	b := &logBridge{
		log:       slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})),
		onSuspect: func(name string) { suspects = append(suspects, name) },
	}
	l := log.New(b, "", 0) // as memberlist gets it
	l.Printf("[DEBUG] memberlist: Stream connection from=127.0.0.1:1234")
	l.Printf("[INFO] memberlist: Suspect cp-3 has failed, no acks received")
	l.Printf("[WARN] memberlist: Refuting a suspect message (from: cp-2)")
	l.Printf("[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=10.0.0.9:5555")
	l.Printf("[DEBUG] memberlist: discarding stream with unacceptable label \"other\": from=10.0.0.9:5556")
	l.Printf("Err: Could not set the deadline: boom")

	want := []string{
		`level=DEBUG msg="Stream connection from=127.0.0.1:1234"`,
		`level=INFO msg="Suspect cp-3 has failed, no acks received"`,
		`level=WARN msg="Refuting a suspect message (from: cp-2)"`,
		`level=ERROR msg="failed to receive: no installed keys could decrypt the message from=10.0.0.9:5555" hint="` + mismatchHint + `"`,
		`level=WARN msg="discarding stream with unacceptable label \"other\": from=10.0.0.9:5556" hint="` + mismatchHint + `"`,
		`level=ERROR msg="Could not set the deadline: boom"`,
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %s\nwant it to contain %s", i, lines[i], w)
		}
	}
	if len(suspects) != 1 || suspects[0] != "cp-3" {
		t.Errorf("suspects reported: %q, want [cp-3]", suspects)
	}
}
