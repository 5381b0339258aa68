package serve

import (
	"context"
	"testing"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/iostreams"
)

// TestNewRunF: New(f, runF) hands runF the parsed options instead of
// running the proxy, the convention every command follows (cmdutil).
func TestNewRunF(t *testing.T) {
	io, _, _, _ := iostreams.Test()
	var got *Options
	cmd := New(factory.New(io), func(_ context.Context, o *Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--config", "/x/proxy.config"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.ConfigPath != "/x/proxy.config" || got.IO != io {
		t.Errorf("runF got %+v", got)
	}
}
