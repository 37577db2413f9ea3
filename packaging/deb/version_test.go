package deb

import (
	"testing"
	"time"
)

func TestUpstreamVersion(t *testing.T) {
	commit := time.Date(2026, 11, 30, 23, 59, 0, 0, time.FixedZone("x", -3600))
	for _, tc := range []struct{ in, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-dirty", "1.2.3+dirty"},
		{"v1.2.3-4-gabc1234", "1.2.3+git4.abc1234"},
		{"v1.2.3-4-gabc1234-dirty", "1.2.3+git4.abc1234+dirty"},
		{"v1.2.3-rc.1", "1.2.3~rc.1"},
		{"v1.2.3-rc1-2-gabc1234", "1.2.3~rc1+git2.abc1234"},
		{"b10dd21", "0.0~git20261201.b10dd21"},
		{"b10dd21-dirty", "0.0~git20261201.b10dd21+dirty"},
	} {
		got, err := UpstreamVersion(tc.in, commit)
		if err != nil || got != tc.want {
			t.Errorf("UpstreamVersion(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "dev", "release-1", "v1.2", "v1.2.3-rc_1"} {
		if got, err := UpstreamVersion(bad, commit); err == nil {
			t.Errorf("UpstreamVersion(%q) = %q, want an error", bad, got)
		}
	}
}
