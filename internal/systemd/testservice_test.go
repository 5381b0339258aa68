package systemd

// testService is the e-mail proxy's description (internal/cli/emailproxy/
// service.Description, which this package may not import): the golden
// units are the proxy's, and TestDescriptionRendersTheGoldenUnit there
// proves that its description renders them byte for byte.
var testService = Service{
	Name:                     "email-oauth2-proxy.service",
	Description:              "orbit email OAuth 2.0 proxy",
	Origin:                   "orbit email-oauth2-proxy register",
	User:                     "orbit-emailproxy",
	UserRole:                 "the proxy service",
	StateDirectory:           "orbit/email-oauth2-proxy",
	Args:                     []string{"email-oauth2-proxy", "serve", "--config", ConfigPlaceholder},
	ReloadSignal:             "HUP",
	RestartPreventExitStatus: "2 10 78 " + SetupExitStatus,
}

const (
	DefaultUnitName       = "email-oauth2-proxy.service"
	DefaultUser           = "orbit-emailproxy"
	DefaultStateDirectory = "orbit/email-oauth2-proxy"
)
