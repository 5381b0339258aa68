package service

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is a running `orbit FAMILY serve`: status reports
// one run by hand as a foreground engine, and start refuses to start the
// unit while one holds the ports of the same file.
type Process struct {
	PID int
	// Config is the file it serves, absolute ("" when it cannot be told:
	// a relative --config of a process whose working directory is hidden).
	Config string
	// Argv is its command line.
	Argv []string
}

// ReadProcesses lists the serve processes of this PID namespace from
// /proc: a command line with the family's Command followed by "serve".
// Command lines are readable by every user, so this works without root.
func (d Description) ReadProcesses() ([]Process, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		argv := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if p, ok := d.serveProcess(pid, argv); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// serveProcess recognises serve's command line and the file it serves.
func (d Description) serveProcess(pid int, argv []string) (Process, bool) {
	at := -1
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == d.Command && argv[i+1] == "serve" {
			at = i + 2
			break
		}
	}
	if at < 0 {
		return Process{}, false
	}
	cfg := d.DefaultConfig
	for i := at; i < len(argv); i++ {
		if argv[i] == "--" {
			break
		}
		if argv[i] == "--config" && i+1 < len(argv) {
			cfg = argv[i+1]
		} else if v, ok := strings.CutPrefix(argv[i], "--config="); ok {
			cfg = v
		}
	}
	if !filepath.IsAbs(cfg) {
		cwd, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd"))
		if err != nil {
			cfg = ""
		} else {
			cfg = filepath.Join(cwd, cfg)
		}
	}
	if cfg != "" {
		cfg = filepath.Clean(cfg)
	}
	return Process{PID: pid, Config: cfg, Argv: argv}, true
}

// ForegroundServe finds a serve process for cfgPath other than the unit's
// main process (mainPID, 0 when none).
func ForegroundServe(procs []Process, cfgPath string, mainPID uint32) (Process, bool) {
	if a, err := filepath.Abs(cfgPath); err == nil {
		cfgPath = a
	}
	for _, p := range procs {
		if p.Config == cfgPath && uint32(p.PID) != mainPID {
			return p, true
		}
	}
	return Process{}, false
}
