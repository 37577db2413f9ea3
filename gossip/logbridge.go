package gossip

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
)

// mismatchHint is added to memberlist's complaints about traffic it could
// not authenticate, which is what a wrong secret or cluster name looks
// like from the receiving side.
const mismatchHint = "check that cluster_secret and cluster_name match on every node"

// suspectLine is how memberlist reports that this node's probe of another
// failed and it raises suspicion; it has no delegate call for that.
var suspectLine = regexp.MustCompile(`^Suspect (\S+) has failed, no acks received$`)

// logBridge is the io.Writer behind memberlist's *log.Logger. It turns
// each line ("[WARN] memberlist: ...") into a slog record at the matching
// level, and reports suspicion lines to onSuspect.
type logBridge struct {
	log       *slog.Logger
	onSuspect func(name string)
}

// Write handles one line; log.Logger writes each line in one call.
func (b *logBridge) Write(p []byte) (int, error) {
	level, msg := parseMemberlistLine(string(p))
	var attrs []any
	if isAuthFailure(msg) {
		attrs = append(attrs, "hint", mismatchHint)
		level = max(level, slog.LevelWarn)
	}
	b.log.Log(context.Background(), level, msg, attrs...)
	if m := suspectLine.FindStringSubmatch(msg); m != nil && b.onSuspect != nil {
		b.onSuspect(m[1])
	}
	return len(p), nil
}

// parseMemberlistLine splits a memberlist log line into its level and
// message.
func parseMemberlistLine(line string) (slog.Level, string) {
	line = strings.TrimRight(line, "\r\n")
	level := slog.LevelInfo
	for _, l := range []struct {
		prefix string
		level  slog.Level
	}{
		{"[DEBUG]", slog.LevelDebug},
		{"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn},
		{"[ERR]", slog.LevelError},
		{"[ERROR]", slog.LevelError},
		{"Err:", slog.LevelError},
	} {
		if rest, ok := strings.CutPrefix(line, l.prefix); ok {
			level, line = l.level, strings.TrimSpace(rest)
			break
		}
	}
	return level, strings.TrimPrefix(line, "memberlist: ")
}

// isAuthFailure reports whether a memberlist message is about traffic
// that failed the label check or decryption.
func isAuthFailure(msg string) bool {
	msg = strings.ToLower(msg)
	for _, s := range []string{"unacceptable label", "label header", "decrypt", "no installed keys"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
