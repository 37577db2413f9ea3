package quorum

import (
	"strings"
	"testing"
)

func TestLeave(t *testing.T) {
	voter := func(id uint64, name string, up bool) EtcdMember {
		return EtcdMember{ID: id, Name: name, Started: true, Active: up}
	}
	learner := voter(9, "d", true)
	learner.IsLearner = true
	cases := []struct {
		name    string
		members []EtcdMember
		member  bool
		safe    bool
		reason  string
	}{
		{"not listed", []EtcdMember{voter(2, "b", true), voter(3, "c", true)}, false, true, "does not list this node"},
		{"learner", []EtcdMember{voter(2, "b", false), voter(3, "c", false), func() EtcdMember { l := learner; l.ID = 1; return l }()}, true, true, "learner"},
		{"only voter", []EtcdMember{voter(1, "a", true)}, true, false, "only voter"},
		{"only voter with a learner", []EtcdMember{voter(1, "a", true), learner}, true, false, "only voter"},
		{"three healthy", []EtcdMember{voter(1, "a", true), voter(2, "b", true), voter(3, "c", true)}, true, true, "tolerates 0 failure"},
		{"three, one other down", []EtcdMember{voter(1, "a", true), voter(2, "b", true), voter(3, "c", false)}, true, false, "would leave 2 voters of which 1 answer (down: c)"},
		{"three, self down, others up", []EtcdMember{voter(1, "a", false), voter(2, "b", true), voter(3, "c", true)}, true, true, "quorum holds"},
		{"two", []EtcdMember{voter(1, "a", true), voter(2, "b", true)}, true, true, "1 voters stay"},
		{"two, other down", []EtcdMember{voter(1, "a", true), voter(2, "b", false)}, true, false, "bring b back"},
		{"five, one down", []EtcdMember{voter(1, "a", true), voter(2, "b", true), voter(3, "c", true), voter(4, "d", true), voter(5, "e", false)}, true, true, "tolerates 1 failure"},
		{"five, two down", []EtcdMember{voter(1, "a", true), voter(2, "b", true), voter(3, "c", true), voter(4, "d", false), voter(5, "e", false)}, true, false, "down: d, e"},
		{"unstarted voter counts as down", []EtcdMember{voter(1, "a", true), voter(2, "b", true), {ID: 0x3c}}, true, false, "3c (not started)"},
		{"learners do not count for quorum", []EtcdMember{voter(1, "a", true), voter(2, "b", false), learner}, true, false, "a quorum of 1 needs 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Leave(1, c.members)
			if got.Member != c.member || got.Safe != c.safe || !strings.Contains(got.Reason, c.reason) {
				t.Errorf("Leave = %+v, want member %v safe %v reason containing %q", got, c.member, c.safe, c.reason)
			}
		})
	}
}
