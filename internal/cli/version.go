package cli

import (
	"cmp"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is -version: which release or commit this is, and the Go and
// platform that built it. The version is the stamped release
// (releaseVersion, main's, "" when none), else the module's version from
// the build information: the tag `go install …@v0.1.0` fetched, or the
// pseudo-version the go command makes in a git checkout
// (v0.0.0-20261206181819-d74785fce83e, +dirty when modified). The commit, its time and "modified" come from the build information
// (git checkouts only). A build with neither says so and how to get one,
// rather than a bare "(devel)".
func Version(releaseVersion string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return fmt.Sprintf("wssproxy %s (no build information) %s/%s", cmp.Or(releaseVersion, "devel"), runtime.GOOS, runtime.GOARCH)
	}
	v := releaseVersion
	if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	var detail string
	switch {
	case rev != "":
		detail = fmt.Sprintf(" (commit %s, %s%s)", rev, at, dirty)
	case v == "":
		detail = " (no version or commit recorded: built outside a git checkout, or with -buildvcs=false; " +
			"a build in a checkout with -buildvcs=true, .ci/release or go install …@VERSION records one)"
	}
	return fmt.Sprintf("wssproxy %s%s %s %s/%s", cmp.Or(v, "devel"), detail, bi.GoVersion, runtime.GOOS, runtime.GOARCH)
}
