package config

import (
	"strings"
	"testing"
)

func TestMetricsListen(t *testing.T) {
	for v, wantErr := range map[string]string{
		"127.0.0.1:9101":               "",
		"[::1]:9101":                   "",
		"unix:/run/orbit/metrics.sock": "",
		"0.0.0.0:9101":                 "is not a loopback address",
		"unix:metrics.sock":            "must be absolute",
		"9101":                         "is not HOST:PORT",
	} {
		c := mustParse(t, "[emailproxy]\nmetrics_listen = "+v+"\n")
		if c.MetricsListen() != v {
			t.Errorf("MetricsListen() = %q, want %q", c.MetricsListen(), v)
		}
		var got string
		for _, d := range c.Validate() {
			if d.Severity == Error && strings.Contains(d.String(), "metrics_listen") {
				got = d.String()
			}
		}
		if (wantErr == "") != (got == "") || !strings.Contains(got, wantErr) {
			t.Errorf("%s: diagnostic %q, want one containing %q", v, got, wantErr)
		}
	}
}
