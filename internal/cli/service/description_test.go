package service

import (
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/systemd"
)

// tick is a second family's description: nothing here may say e-mail.
var tick = Description{
	Service: systemd.Service{Name: "orbit-tick.service", User: "orbit-tick"},
	Command: "tick",
	Noun:    "ticker",
}

func TestConnectErrorNamesTheFamily(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code exitcode.Code
		want []string
	}{
		{"no systemd", fmt.Errorf("dial: %w", systemd.ErrNoSystemd), exitcode.NoSystemd,
			[]string{"cannot start orbit-tick.service", "no service manager to run the ticker here", "orbit tick serve --config '/etc/my tick.conf'"}},
		{"denied", fmt.Errorf("bus: %w", fs.ErrPermission), exitcode.Permission, []string{"cannot start orbit-tick.service"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tick.ConnectError("cannot start orbit-tick.service", "/etc/my tick.conf", tt.err)
			if got := exitcode.Of(err); got != tt.code {
				t.Errorf("exit code %d, want %d (%v)", got, tt.code, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(strings.ToLower(err.Error()), "mail") {
				t.Errorf("a second family's error speaks of e-mail: %q", err)
			}
		})
	}
}

func TestServiceForKeepsTheDescription(t *testing.T) {
	if got := tick.ServiceFor("").User; got != "orbit-tick" {
		t.Errorf("ServiceFor(\"\").User = %q, want the description's", got)
	}
	if got := tick.ServiceFor("ticker2"); got.User != "ticker2" || got.Name != "orbit-tick.service" {
		t.Errorf("ServiceFor(ticker2) = %+v", got)
	}
	if tick.Service.User != "orbit-tick" {
		t.Errorf("ServiceFor changed the description itself")
	}
}
