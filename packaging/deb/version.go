package deb

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

var (
	// v1.2.3, v1.2.3-rc.1, with git describe's -N-gSHA and -dirty.
	describeTag = regexp.MustCompile(`^v?(\d+\.\d+\.\d+)(?:-([0-9A-Za-z.]+?))??(?:-(\d+)-g([0-9a-f]+))?(-dirty)?$`)
	// An untagged tree: git describe --always prints the short hash.
	describeHash = regexp.MustCompile(`^([0-9a-f]{4,40})(-dirty)?$`)
	// Debian policy 5.6.12: an upstream version starts with a digit and
	// holds only alphanumerics and . + ~ (- only with a revision).
	upstreamOK = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)
)

// UpstreamVersion turns `git describe --tags --always --dirty` into the
// upstream part of a Debian version that sorts the way releases do:
//
//	v1.2.3             1.2.3
//	v1.2.3-rc.1        1.2.3~rc.1           (before 1.2.3)
//	v1.2.3-4-gabc1234  1.2.3+git4.abc1234   (after 1.2.3, before 1.2.4)
//	abc1234            0.0~git20261130.abc1234 (no tag yet; date of the commit, UTC)
//
// and "-dirty" becomes "+dirty".
func UpstreamVersion(describe string, commit time.Time) (string, error) {
	describe = strings.TrimSpace(describe)
	var v string
	dirty := false
	if m := describeTag.FindStringSubmatch(describe); m != nil {
		v = m[1]
		if m[2] != "" {
			v += "~" + m[2]
		}
		if m[3] != "" {
			v += "+git" + m[3] + "." + m[4]
		}
		dirty = m[5] != ""
	} else if m := describeHash.FindStringSubmatch(describe); m != nil {
		v = "0.0~git" + commit.UTC().Format("20060102") + "." + m[1]
		dirty = m[2] != ""
	} else {
		return "", fmt.Errorf("cannot make a Debian version of %q: expected vX.Y.Z[-pre][-N-gSHA][-dirty] or a commit hash", describe)
	}
	if dirty {
		v += "+dirty"
	}
	if !upstreamOK.MatchString(v) {
		return "", fmt.Errorf("%q gives %q, not a valid Debian upstream version", describe, v)
	}
	return v, nil
}
