// Package version reports what this herd binary is: its release, the commit
// it was built from, the Go toolchain, and the versions of the libraries
// that shape its behaviour (gotch, NATS, raft), read from the build info Go
// embeds in every binary.
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Release is herd's version; bumped by hand at release time.
const Release = "0.1.0-dev"

// commit is set by the Makefile (-ldflags -X): Go does not stamp VCS
// information into builds made in workspace mode, which herd's go.work is.
var commit string

// Info is the build identity of the running binary.
type Info struct {
	Release   string `json:"release"`
	Commit    string `json:"commit,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go"`
	// Deps maps module path to version for the libraries listed in Tracked.
	Deps map[string]string `json:"deps"`
}

// Tracked are the modules whose versions `herd version` and `herd doctor`
// report. A module not linked into this binary reports "not linked".
var Tracked = []string{
	"github.com/sugarme/gotch",
	"github.com/nats-io/nats.go",
	"github.com/nats-io/nats-server/v2",
	"github.com/hashicorp/raft",
	"github.com/hashicorp/raft-boltdb/v2",
	"go.opentelemetry.io/otel",
	"github.com/urfave/cli/v2",
}

// Get reads the build info of the running binary.
func Get() Info {
	in := Info{Release: Release, GoVersion: runtime.Version(), Deps: map[string]string{}}
	for _, m := range Tracked {
		in.Deps[m] = "not linked"
	}
	in.Commit = commit
	if strings.HasSuffix(commit, "-dirty") {
		in.Commit, in.Modified = strings.TrimSuffix(commit, "-dirty"), true
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	for _, d := range bi.Deps {
		if _, tracked := in.Deps[d.Path]; tracked {
			v := d.Version
			if d.Replace != nil {
				v += " (prepared copy)"
			}
			in.Deps[d.Path] = v
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if in.Commit == "" {
				in.Commit = s.Value
			}
		case "vcs.modified":
			in.Modified = in.Modified || s.Value == "true"
		}
	}
	return in
}

// String is the one-line form: "0.1.0-dev (abc1234, go1.26.8)".
func (i Info) String() string {
	commit := i.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if commit == "" {
		commit = "unknown commit"
	}
	if i.Modified {
		commit += "+dirty"
	}
	return i.Release + " (" + commit + ", " + i.GoVersion + ")"
}
