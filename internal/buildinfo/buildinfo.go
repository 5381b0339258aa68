// Package buildinfo holds the version stamped by the release build
// (goreleaser sets these with -ldflags -X) and falls back to what the Go
// toolchain recorded for a plain `go build` or `go install`.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set at link time: -X github.com/senhasegura/orbit/internal/buildinfo.Version=...
var (
	Version = ""
	Commit  = ""
	Date    = ""
)

// Info is what `orbit version` reports.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// Get returns the stamped values, completed from the binary's own build
// information where the release build did not stamp them.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, Date: Date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if i.Commit == "" {
					i.Commit = s.Value
				}
			case "vcs.time":
				if i.Date == "" {
					i.Date = s.Value
				}
			}
		}
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	if i.Commit == "" {
		i.Commit = "unknown"
	}
	if i.Date == "" {
		i.Date = "unknown"
	}
	return i
}
