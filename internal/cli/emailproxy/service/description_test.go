package service_test

import (
	"os"
	"testing"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/systemd"
)

// TestDescriptionRendersTheGoldenUnit: the e-mail proxy's description,
// which moved out of internal/systemd, renders the very unit and
// sysusers.d line the renderer wrote when it knew only this service.
func TestDescriptionRendersTheGoldenUnit(t *testing.T) {
	u, err := systemd.Render(systemd.UnitOptions{Service: service.Description, Binary: "/usr/local/bin/orbit", ConfigFile: "/etc/orbit/email-oauth2-proxy/emailproxy.config"})
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../../systemd/testdata/email-oauth2-proxy.service")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Bytes(); string(got) != string(want) {
		t.Errorf("the e-mail proxy's unit changed:\n%s\nwant (internal/systemd/testdata):\n%s", got, want)
	}
	const sysusers = "# Written by \"orbit email-oauth2-proxy register\": the user the proxy service runs as.\nu orbit-emailproxy - \"orbit email OAuth 2.0 proxy\" /var/lib/orbit/email-oauth2-proxy\n"
	if got := service.Description.SysusersSnippet(service.DefaultUser, service.DefaultStateDirectory); got != sysusers {
		t.Errorf("sysusers.d line = %q, want %q", got, sysusers)
	}
}
