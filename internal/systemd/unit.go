// Package systemd renders, installs and controls the unit that runs a
// family's service, as the family's Service describes it (the e-mail
// proxy is the first): the unit file is built with go-systemd's unit
// package, and the service manager is driven over D-Bus with go-systemd's
// dbus package (no systemctl parsing). Every call that waits takes a
// context and gives up when it ends; on a machine without systemd the
// calls fail fast with ErrNoSystemd.
package systemd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/unit"
)

// Defaults of UnitOptions.
const (
	DefaultRestartDelay = 5 * time.Second
	DefaultWatchdog     = 30 * time.Second
	DefaultStopTimeout  = 15 * time.Second
)

// KillCommand sends the reload signal (ExecReload); procps' kill, at the
// path Debian keeps it.
const KillCommand = "/bin/kill"

// SetupExitStatus lists systemd's own failures to set a service's process
// up that restarting does not cure, for a Service's
// RestartPreventExitStatus: 200/CHDIR (the working directory, in the state
// directory, is not accessible), 203/EXEC, 217/USER, 238/STATE_DIRECTORY.
const SetupExitStatus = "200 203 217 238"

// StartLimitInterval and StartLimitBurst bound automatic restarts of any
// other failure: 5 starts in 2 minutes, then the unit stays failed.
const (
	StartLimitInterval = 2 * time.Minute
	StartLimitBurst    = 5
)

// ConfigPlaceholder, as a word of UnitOptions.Exec, is replaced by the
// configuration file's path.
const ConfigPlaceholder = "{config}"

// UnitOptions describe one installation of a service. Service and
// ConfigFile are required.
type UnitOptions struct {
	// Service is the family's description of its service.
	Service Service
	// Name of the unit; "" means Service.Name. It must end in ".service".
	Name string
	// Description; "" means Service.Description.
	Description string
	// ConfigFile is the proxy's INI file, an absolute path. The engine
	// rewrites it (tokens live in it, as with the Python proxy), so its
	// directory is the one place outside the state directory the service
	// may write; keep the file in a directory of its own.
	ConfigFile string
	// Binary is the orbit executable for ExecStart; "" means this process's
	// own executable.
	Binary string
	// Exec, when set, replaces the whole command line so that a site can
	// run another engine on the same file, for example
	// {"/usr/local/bin/emailproxy", "--no-gui", "--local-server-auth",
	// "--config-file", ConfigPlaceholder}. Such an engine is assumed not to
	// speak sd_notify: the unit becomes Type=exec without a watchdog
	// unless ExecNotify is set.
	Exec []string
	// ExecNotify says that the Exec engine sends READY=1 and WATCHDOG=1.
	ExecNotify bool
	// User (and group of the same name) the service runs as; "" means
	// Service.User. See EnsureUser.
	User string
	// StateDirectory below /var/lib; "" means Service.StateDirectory.
	StateDirectory string
	// RestartDelay, Watchdog and StopTimeout become RestartSec=,
	// WatchdogSec= and TimeoutStopSec=; 0 means the defaults. A negative
	// Watchdog turns the watchdog off.
	RestartDelay, Watchdog, StopTimeout time.Duration
	// Sessions is how many client sessions the proxy may hold at once, all
	// listeners together (the sum of their max_sessions); LimitNOFILE= and
	// MemoryMax= are sized from it. 0 means DefaultSessions.
	Sessions int
	// EncryptedCredentials become LoadCredentialEncrypted=NAME:PATH lines:
	// systemd decrypts each file (made with systemd-creds encrypt, host key
	// or TPM2) into $CREDENTIALS_DIRECTORY/NAME at every start. The files
	// must exist, or the unit fails to start (243/CREDENTIALS).
	EncryptedCredentials []Credential
}

// Credential is an encrypted systemd credential the unit loads.
type Credential struct {
	Name string // the file name under $CREDENTIALS_DIRECTORY
	Path string // the encrypted file, absolute
}

// DefaultSessions is three listeners (IMAP, POP, SMTP) at the proxy's
// default max_sessions of 10,000 each.
const DefaultSessions = 3 * 10000

// Resource limits per session and for the rest of the process.
const (
	fdsPerSession   = 2 // the client's connection and the upstream one
	fdsBase         = 4096
	bytesPerSession = 64 << 10 // an idle session needs far less; a busy one has a 64 KiB copy buffer
	bytesBase       = 256 << 20
	tasksMax        = 512 // OS threads: Go needs a few per core plus blocked system calls
)

// NoFileLimit is the LimitNOFILE= for sessions: a descriptor for each side
// of every session plus room for listeners, the token endpoints, the
// journal and files, so that sessions over max_sessions are still
// accepted and told to come back later instead of meeting a full table.
func NoFileLimit(sessions int) int { return fdsPerSession*sessions + fdsBase }

// MemoryLimit is the MemoryMax= in bytes for sessions.
func MemoryLimit(sessions int) int64 { return int64(sessions)*bytesPerSession + bytesBase }

// Unit is a rendered unit file.
type Unit struct {
	Name    string
	Options []*unit.UnitOption
	// Service is the description it was rendered from; its Origin heads
	// the file.
	Service Service
}

// header explains where the file comes from; go-systemd's serializer has
// no comments, so it is put in front.
const header = `# Written by %q; it is rewritten on every
# %s. Put local changes in a drop-in: systemctl edit %s
`

// Bytes is the unit file's content.
func (u Unit) Bytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, header, u.Service.Origin, u.Service.step(), u.Name)
	b.WriteByte('\n')
	if _, err := io.Copy(&b, unit.Serialize(u.Options)); err != nil {
		// Serialize returns an in-memory reader; copying it cannot fail.
		panic(err)
	}
	return b.Bytes()
}

// Value returns the last value of option name in section ("" when unset);
// the last one is what systemd uses for single-valued options.
func (u Unit) Value(section, name string) string {
	v := ""
	for _, o := range u.Options {
		if o.Section == section && o.Name == name {
			v = o.Value
		}
	}
	return v
}

// Render builds the unit for opts.
func Render(opts UnitOptions) (Unit, error) {
	o, err := withDefaults(opts)
	if err != nil {
		return Unit{}, err
	}
	cfgDir := filepath.Dir(o.ConfigFile)

	var argv []string
	notify := true
	if len(o.Exec) > 0 {
		for _, w := range o.Exec {
			argv = append(argv, strings.ReplaceAll(w, ConfigPlaceholder, o.ConfigFile))
		}
		notify = o.ExecNotify
		if !filepath.IsAbs(argv[0]) {
			return Unit{}, fmt.Errorf("systemd unit: the engine %q must be an absolute path (systemd does not search PATH reliably for services): use e.g. $(command -v %s)", argv[0], argv[0])
		}
	} else {
		argv = []string{o.Binary}
		for _, w := range o.Service.Args {
			argv = append(argv, strings.ReplaceAll(w, ConfigPlaceholder, o.ConfigFile))
		}
	}
	exec, err := execLine(argv)
	if err != nil {
		return Unit{}, err
	}

	u := Unit{Name: o.Name, Service: o.Service}
	add := func(section, name, value string) {
		u.Options = append(u.Options, unit.NewUnitOption(section, name, value))
	}
	add("Unit", "Description", o.Description)
	add("Unit", "Documentation", "man:orbit(1)")
	// The proxy dials Office 365 / Google; starting before the network is
	// up only produces failed first logins.
	add("Unit", "Wants", "network-online.target")
	add("Unit", "After", "network-online.target")
	// A failure that restarting does not cure must end in "failed", not
	// in a restart every RestartSec for ever: at most StartLimitBurst
	// starts in StartLimitIntervalSec (systemd's default window, 10 s, is
	// shorter than RestartSec times the burst, so it never stopped one).
	add("Unit", "StartLimitIntervalSec", seconds(StartLimitInterval))
	add("Unit", "StartLimitBurst", strconv.Itoa(StartLimitBurst))

	if notify {
		add("Service", "Type", "notify")
		add("Service", "NotifyAccess", "main")
	} else {
		// exec, not simple: the start job waits for execve() to succeed,
		// so a missing or broken engine fails the start instead of
		// reporting success and dying a moment later.
		add("Service", "Type", "exec")
	}
	add("Service", "ExecStart", exec)
	if notify && o.Service.ReloadSignal != "" {
		// The daemon reloads its file on the signal (refusing a broken
		// one), which makes `systemctl reload` and the family's reload
		// work; $MAINPID is systemd's, not to be escaped.
		add("Service", "ExecReload", KillCommand+" -"+o.Service.ReloadSignal+" $MAINPID")
	}
	add("Service", "Restart", "on-failure")
	add("Service", "RestartSec", seconds(o.RestartDelay))
	if notify && o.Service.RestartPreventExitStatus != "" {
		add("Service", "RestartPreventExitStatus", o.Service.RestartPreventExitStatus)
	}
	if notify && o.Watchdog > 0 {
		add("Service", "WatchdogSec", seconds(o.Watchdog))
	}
	add("Service", "TimeoutStopSec", seconds(o.StopTimeout))

	// Identity: a fixed system user rather than DynamicUser=, because the
	// configuration file must stay readable and writable by the service
	// across restarts (it holds the tokens), at a path the administrator
	// chose, and a dynamic UID owns nothing outside its own directories.
	add("Service", "User", o.User)
	add("Service", "Group", o.User)
	add("Service", "StateDirectory", o.StateDirectory)
	add("Service", "StateDirectoryMode", "0700")
	add("Service", "WorkingDirectory", "%S/"+escapeSpecifiers(o.StateDirectory))
	add("Service", "UMask", "0077")
	for _, c := range o.EncryptedCredentials {
		add("Service", "LoadCredentialEncrypted", c.Name+":"+escapeSpecifiers(c.Path))
	}

	// File system: everything read-only except the state directory and the
	// configuration file's directory (atomic rewrites rename a new file
	// into it, and the lock file sits next to it).
	add("Service", "ProtectSystem", "strict")
	add("Service", "ReadWritePaths", quotePath(cfgDir))
	if underHome(cfgDir) {
		// ProtectHome=yes would hide the file; an empty /home with just the
		// configuration directory bound into it keeps the rest hidden.
		if strings.Contains(cfgDir, ":") {
			return Unit{}, fmt.Errorf("systemd unit: configuration directory %q is under a home directory and contains ':', which BindPaths= cannot express; move the file, e.g. %s", cfgDir, exampleDir(o.Service.ConfigExample))
		}
		add("Service", "ProtectHome", "tmpfs")
		add("Service", "BindPaths", quotePath(cfgDir))
	} else {
		add("Service", "ProtectHome", "yes")
	}
	add("Service", "PrivateTmp", "yes")
	add("Service", "PrivateDevices", "yes")
	add("Service", "DevicePolicy", "closed")
	add("Service", "PrivateUsers", "yes")
	add("Service", "ProtectProc", "invisible")
	add("Service", "ProcSubset", "pid")

	// Kernel and system state it never touches.
	add("Service", "ProtectKernelTunables", "yes")
	add("Service", "ProtectKernelModules", "yes")
	add("Service", "ProtectKernelLogs", "yes")
	add("Service", "ProtectControlGroups", "yes")
	add("Service", "ProtectClock", "yes")
	add("Service", "ProtectHostname", "yes")
	add("Service", "KeyringMode", "private")
	add("Service", "RemoveIPC", "yes")

	// Privileges: none. Its listeners are on ports above 1023.
	add("Service", "NoNewPrivileges", "yes")
	add("Service", "CapabilityBoundingSet", "")
	add("Service", "AmbientCapabilities", "")
	add("Service", "RestrictSUIDSGID", "yes")
	add("Service", "LockPersonality", "yes")
	add("Service", "MemoryDenyWriteExecute", "yes")
	add("Service", "RestrictRealtime", "yes")
	add("Service", "RestrictNamespaces", "yes")

	// Network: IP for the listeners and upstream servers, AF_UNIX for the
	// journal and sd_notify. No IP address filter: the upstream addresses
	// belong to the providers' CDNs and change.
	add("Service", "RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX")

	// System calls: what a network service needs, minus privileged and
	// resource-control calls; refused calls fail with EPERM instead of
	// killing the process, so a surprise is an error message, not a crash.
	add("Service", "SystemCallArchitectures", "native")
	add("Service", "SystemCallFilter", "@system-service")
	add("Service", "SystemCallFilter", "~@privileged @resources")
	add("Service", "SystemCallErrorNumber", "EPERM")

	// Resources: descriptors for every session max_sessions allows, so
	// that max_sessions and not the descriptor table limits sessions, and
	// a ceiling on memory and threads, so a flood or a leak ends in
	// refused sessions or a restart, not in a starved appliance.
	add("Service", "LimitNOFILE", strconv.Itoa(NoFileLimit(o.Sessions)))
	add("Service", "MemoryMax", strconv.FormatInt(MemoryLimit(o.Sessions)>>20, 10)+"M")
	if notify && len(o.Exec) == 0 {
		// Threads, not goroutines; another engine (the Python proxy has
		// a thread per connection) keeps systemd's default.
		add("Service", "TasksMax", strconv.Itoa(tasksMax))
	}

	u.Options = o.Service.applyOverrides(u.Options)
	add("Install", "WantedBy", "multi-user.target")
	return u, nil
}

func withDefaults(o UnitOptions) (UnitOptions, error) {
	if err := o.Service.Check(); err != nil {
		return o, err
	}
	if o.Name == "" {
		o.Name = o.Service.Name
	}
	if !strings.HasSuffix(o.Name, ".service") || strings.ContainsAny(o.Name, "/ \t\n") || len(o.Name) > 255 {
		return o, fmt.Errorf("systemd unit: name %q must be a plain file name ending in .service", o.Name)
	}
	if o.Description == "" {
		o.Description = o.Service.Description
	}
	if strings.ContainsAny(o.Description, "\n\r") {
		return o, errors.New("systemd unit: the description must be one line")
	}
	if o.User == "" {
		o.User = o.Service.User
	}
	if !validUserName(o.User) {
		return o, fmt.Errorf("systemd unit: user %q is not a valid system user name (lower-case letters, digits, '-' and '_', at most 31 characters)", o.User)
	}
	if o.StateDirectory == "" {
		o.StateDirectory = o.Service.StateDirectory
	}
	if filepath.IsAbs(o.StateDirectory) || strings.Contains(o.StateDirectory, "..") || strings.ContainsAny(o.StateDirectory, " \t\n") {
		return o, fmt.Errorf("systemd unit: state directory %q must be a relative path below /var/lib, without spaces or \"..\" components", o.StateDirectory)
	}
	if o.Sessions == 0 {
		o.Sessions = DefaultSessions
	}
	if o.Sessions < 0 {
		return o, fmt.Errorf("systemd unit: %d sessions is not a number of sessions", o.Sessions)
	}
	for _, c := range o.EncryptedCredentials {
		if c.Name == "" || strings.ContainsAny(c.Name, "/: \t\n") || !filepath.IsAbs(c.Path) || strings.ContainsAny(c.Path, " \t\n") {
			return o, fmt.Errorf("systemd unit: credential %q at %q: the name must be a plain word and the path absolute, without spaces", c.Name, c.Path)
		}
	}
	if o.RestartDelay == 0 {
		o.RestartDelay = DefaultRestartDelay
	}
	if o.Watchdog == 0 {
		o.Watchdog = DefaultWatchdog
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.ConfigFile == "" {
		return o, errors.New("systemd unit: the configuration file is required")
	}
	if !filepath.IsAbs(o.ConfigFile) {
		return o, fmt.Errorf("systemd unit: configuration file %q must be an absolute path (services start in their own working directory)", o.ConfigFile)
	}
	o.ConfigFile = filepath.Clean(o.ConfigFile)
	if err := checkConfigDir(filepath.Dir(o.ConfigFile), o.Service.ConfigExample); err != nil {
		return o, err
	}
	if o.Binary == "" && len(o.Exec) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("systemd unit: finding this program's path for ExecStart: %w (pass the orbit binary's path)", err)
		}
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		o.Binary = exe
	}
	if len(o.Exec) == 0 && !filepath.IsAbs(o.Binary) {
		return o, fmt.Errorf("systemd unit: the orbit binary %q must be an absolute path", o.Binary)
	}
	return o, nil
}

// sharedDirs are directories that a service must not get write access to
// wholesale, and directories that the sandbox hides.
var sharedDirs = map[string]string{
	"/": "", "/etc": "", "/usr": "", "/var": "", "/var/lib": "", "/opt": "", "/srv": "",
	"/home": "", "/root": "", "/run": "", "/boot": "", "/usr/local": "", "/usr/local/etc": "",
	"/tmp":     " (the service's private /tmp hides it)",
	"/var/tmp": " (the service's private /var/tmp hides it)",
	"/dev/shm": " (the service's private devices hide it)",
}

// exampleDir names where a configuration file could go instead: example's
// directory (a Service's ConfigExample), or a generic place without one.
func exampleDir(example string) string {
	if example == "" {
		return "to a directory of its own under /etc/orbit/"
	}
	return "to " + filepath.Dir(example) + "/"
}

// checkConfigDir refuses a configuration directory the unit cannot use;
// example is the family's ConfigExample for the fix ("" when the caller
// has no Service).
func checkConfigDir(dir, example string) error {
	if why, ok := sharedDirs[dir]; ok {
		own := "e.g. " + example
		if example == "" {
			own = "such as one under /etc/orbit/"
		}
		return fmt.Errorf("systemd unit: the configuration file is directly in %s%s; the service may write only its configuration file's directory, so give it a directory of its own, %s", dir, why, own)
	}
	for _, hidden := range []string{"/tmp/", "/var/tmp/", "/dev/shm/"} {
		if strings.HasPrefix(dir+"/", hidden) {
			return fmt.Errorf("systemd unit: the configuration file is under %s, which the service's private temporary directories hide; move it, e.g. %s", hidden, exampleDir(example))
		}
	}
	if !utf8.ValidString(dir) || strings.ContainsAny(dir, "\n\r\x00") {
		return fmt.Errorf("systemd unit: the configuration directory %q contains characters a unit file cannot hold", dir)
	}
	return nil
}

func underHome(dir string) bool {
	for _, h := range []string{"/home/", "/root/", "/run/user/"} {
		if strings.HasPrefix(dir+"/", h) {
			return true
		}
	}
	return false
}

func validUserName(s string) bool {
	if s == "" || len(s) > 31 || s[0] == '-' || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10)
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// execLine renders argv for ExecStart=: every word is protected against
// specifier (%) and environment ($) expansion, and quoted when it holds
// anything systemd's word splitting would act on.
func execLine(argv []string) (string, error) {
	words := make([]string, len(argv))
	for i, a := range argv {
		if strings.ContainsRune(a, 0) || !utf8.ValidString(a) {
			return "", fmt.Errorf("systemd unit: command word %q cannot be written into a unit file", a)
		}
		words[i] = quoteWord(strings.ReplaceAll(a, "$", "$$"))
	}
	return strings.Join(words, " "), nil
}

// quotePath renders a path for options that take space-separated paths.
func quotePath(p string) string { return quoteWord(p) }

func escapeSpecifiers(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// quoteWord escapes specifiers and, when needed, puts s in double quotes
// with C-style escapes, which systemd undoes when it splits the line.
func quoteWord(s string) string {
	s = escapeSpecifiers(s)
	plain := s != "" && s != ";"
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\' {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
