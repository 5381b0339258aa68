package service

import (
	"fmt"
	"path/filepath"

	svc "github.com/senhasegura/orbit/internal/cli/service"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/systemd"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// The e-mail proxy's service: its unit, user and state directory unless
// register --unit or an installed unit says otherwise.
const (
	DefaultUnit           = "email-oauth2-proxy.service"
	DefaultUser           = "orbit-emailproxy"
	DefaultStateDirectory = "orbit/email-oauth2-proxy"
)

// Description is the e-mail proxy's service as internal/systemd renders,
// installs and controls it.
var Description = systemd.Service{
	Name:           DefaultUnit,
	Description:    "orbit email OAuth 2.0 proxy",
	Origin:         "orbit email-oauth2-proxy register",
	User:           DefaultUser,
	UserRole:       "the proxy service",
	StateDirectory: DefaultStateDirectory,
	StartCommand:   "orbit email-oauth2-proxy start",
	ConfigExample:  "/etc/orbit/email-oauth2-proxy/emailproxy.config",
	Args:           []string{"email-oauth2-proxy", "serve", "--config", systemd.ConfigPlaceholder},
	// serve reloads its file on SIGHUP, refusing a broken one.
	ReloadSignal: "HUP",
	// serve's exits that only an administrator can cure: a usage error,
	// permission denied, and an invalid or missing file (EX_CONFIG); then
	// systemd's own failures to set the process up.
	RestartPreventExitStatus: fmt.Sprintf("%d %d %d %s", exitcode.Usage, exitcode.Permission, exitcode.Config, systemd.SetupExitStatus),
}

// ServiceFor is Description for an installed unit's user ("" keeps the
// default).
func ServiceFor(user string) systemd.Service {
	s := Description
	if user != "" {
		s.User = user
	}
	return s
}

// Family is the e-mail proxy's service as the shared verbs
// (internal/cli/service) see it.
var Family = svc.Description{
	Service:       Description,
	Command:       "email-oauth2-proxy",
	Noun:          "proxy",
	DefaultConfig: config.DefaultPath,
	Help:          verbHelp,
	CheckConfig:   CheckFile,
	Provision:     DefaultCredentials.Ensure,
	RenderExtras: func(uo *systemd.UnitOptions) {
		uo.Sessions = ConfiguredSessions(uo.ConfigFile)
		uo.EncryptedCredentials = BackgroundCredentials(uo.ConfigFile, CredentialStore)
	},
	WriteConfig:     "orbit email-oauth2-proxy register",
	ValidateCommand: "config validate",
	ForeignNote:     " (register --exec)",
	StopNote:        " (it lets running sessions finish first)",
	HandOverNote:    "; the tokens it saved carry over to the unit",
	Purge: svc.PurgeWords{
		Companions:  []string{".bak", ".lock"},
		State:       "the token store",
		StateHolds:  "the token store, background_refresh's sealed copies and the status file",
		Consequence: "The mailboxes must then be authorised again. ",
		Keeps:       "the file and tokens",
		// background_refresh's service key: without the sealed copies
		// (in the state directory) it opens nothing.
		Extra: []string{filepath.Join(CredentialStore, oauth.BackgroundCredential)},
	},
}
