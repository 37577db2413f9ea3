package nodecheck

import (
	"fmt"
	"slices"
	"time"
)

// ClockSkew compares this node's clock (local) with the peers' clocks read
// at the same moment, and fails for each peer, by name in order, whose
// clock differs by more than max: a certificate one node issues is "not
// yet valid" (NotBefore) on a node whose clock is behind. It is pure: the
// caller reads the clocks.
func ClockSkew(local time.Time, peers map[string]time.Time, max time.Duration) []Failure {
	names := make([]string, 0, len(peers))
	for name := range peers {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []Failure
	for _, name := range names {
		d := peers[name].Sub(local)
		dir := "ahead of"
		if d < 0 {
			d, dir = -d, "behind"
		}
		if d <= max {
			continue
		}
		out = append(out, Failure{"clock",
			fmt.Sprintf("%s's clock is %s %s this node's (max %s): certificates one issues are not yet valid on the other", name, roundSkew(d), dir, max),
			fmt.Sprintf("keep every node's clock in sync: `apt install chrony`, or `timedatectl set-ntp true` (systemd-timesyncd), here and on %s", name)})
	}
	return out
}

// roundSkew rounds to what a human reads: seconds, or milliseconds under one.
func roundSkew(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
