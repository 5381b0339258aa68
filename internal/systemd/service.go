package systemd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
)

// Service describes a family's long-running service: everything about its
// unit that differs from one family to the next. The family owns its
// description (the e-mail proxy's is in internal/cli/emailproxy/service);
// this package renders, installs and controls any of them, and knows no
// family itself.
type Service struct {
	// Name is the unit's default name, ending in ".service".
	Name string
	// Description is the unit's Description= and the service user's
	// comment in sysusers.d.
	Description string
	// Origin is the command that writes the unit, named in the unit's and
	// the sysusers.d snippet's header; its last word is the step that
	// rewrites them (e.g. "orbit email-oauth2-proxy register").
	Origin string
	// User (and group of the same name) the service runs as by default.
	User string
	// UserRole says in the sysusers.d snippet what runs as User ("the
	// proxy service"); "" means "the service".
	UserRole string
	// StateDirectory below /var/lib, by default.
	StateDirectory string
	// StartCommand starts the unit and repairs its state directory on the
	// way ("orbit email-oauth2-proxy start"), named in CheckStateDir's
	// fixes; "" names only the manual fix.
	StartCommand string
	// ConfigExample is a good place for the configuration file
	// ("/etc/orbit/email-oauth2-proxy/emailproxy.config"), named when the
	// file is somewhere the unit cannot use; "" gives a generic example.
	ConfigExample string
	// Args follow the orbit binary on ExecStart=; ConfigPlaceholder in a
	// word is replaced by the configuration file's path.
	Args []string
	// ReloadSignal, when set ("HUP"), is sent by ExecReload= to a daemon
	// that speaks sd_notify, which then reloads its configuration.
	ReloadSignal string
	// RestartPreventExitStatus lists the exit statuses (and systemd's
	// own, 203 and up) that restarting does not cure, for a daemon that
	// speaks sd_notify; "" sets none.
	RestartPreventExitStatus string
	// Overrides replace the renderer's [Service] options of the same name
	// (every value of it, at the first one's place) or are added after
	// them: how a family relaxes or tightens the default hardening, e.g.
	// RestrictAddressFamilies=AF_UNIX for a daemon that needs no network.
	// An override with an empty value keeps the option with "", which
	// resets it in systemd.
	Overrides []*unit.UnitOption
}

// Check reports what keeps s from describing a unit.
func (s Service) Check() error {
	var errs []error
	if s.Name == "" || s.User == "" || s.StateDirectory == "" || s.Origin == "" || len(s.Args) == 0 {
		errs = append(errs, fmt.Errorf("systemd service %q: a service description needs Name, Origin, User, StateDirectory and Args", s.Name))
	}
	for _, o := range s.Overrides {
		if o.Section != "Service" {
			errs = append(errs, fmt.Errorf("systemd service %q: override %s= is in [%s]; only [Service] options can be overridden", s.Name, o.Name, o.Section))
		}
	}
	return errors.Join(errs...)
}

// SysusersSnippet is the sysusers.d(5) line that creates the service user
// userName with its home in stateDirectory: a system user with its own
// group and no login shell.
func (s Service) SysusersSnippet(userName, stateDirectory string) string {
	role := s.UserRole
	if role == "" {
		role = "the service"
	}
	return fmt.Sprintf("# Written by %q: the user %s runs as.\nu %s - %q /var/lib/%s\n", s.Origin, role, userName, s.Description, stateDirectory)
}

// step is the last word of Origin: what rewrites the unit.
func (s Service) step() string {
	f := strings.Fields(s.Origin)
	if len(f) == 0 {
		return "install"
	}
	return f[len(f)-1]
}

// applyOverrides puts s's overrides into opts.
func (s Service) applyOverrides(opts []*unit.UnitOption) []*unit.UnitOption {
	for _, ov := range s.Overrides {
		replaced := false
		out := opts[:0:0]
		for _, o := range opts {
			if o.Section == ov.Section && o.Name == ov.Name {
				if !replaced {
					out = append(out, unit.NewUnitOption(ov.Section, ov.Name, ov.Value))
					replaced = true
				}
				continue
			}
			out = append(out, o)
		}
		if !replaced {
			// After the last [Service] option.
			at := len(out)
			for i, o := range out {
				if o.Section == "Service" {
					at = i + 1
				}
			}
			out = append(out[:at], append([]*unit.UnitOption{unit.NewUnitOption(ov.Section, ov.Name, ov.Value)}, out[at:]...)...)
		}
		opts = out
	}
	return opts
}
