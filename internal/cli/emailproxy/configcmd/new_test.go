package configcmd

import (
	"context"
	"testing"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/iostreams"
	"github.com/senhasegura/orbit/internal/output"
)

// TestNewRunF: NewShow and NewValidate hand runF the parsed options, the
// convention every command follows (cmdutil).
func TestNewRunF(t *testing.T) {
	io, _, _, _ := iostreams.Test()
	f := factory.New(io)
	var got *Options
	runF := func(_ context.Context, o *Options) error { got = o; return nil }

	show := NewShow(f, runF)
	show.SetArgs([]string{"--config", "/x/a.config", "--output", "json"})
	if err := show.Execute(); err != nil || got == nil || got.ConfigPath != "/x/a.config" || got.Output != output.JSON {
		t.Errorf("show: %v, runF got %+v", err, got)
	}
	got = nil
	validate := NewValidate(f, runF)
	validate.SetArgs([]string{"--config", "/x/b.config", "--token-cache", "/x/tokens"})
	if err := validate.Execute(); err != nil || got == nil || got.ConfigPath != "/x/b.config" || got.TokenPath != "/x/tokens" {
		t.Errorf("validate: %v, runF got %+v", err, got)
	}
}
