// Command orbit is the vault appliance's operator CLI and, as
// `orbit email-oauth2-proxy serve`, the email OAuth 2.0 proxy daemon.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/senhasegura/orbit/internal/cli/root"
	"github.com/senhasegura/orbit/internal/iostreams"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := root.Main(ctx, os.Args[1:], iostreams.System())
	stop()
	os.Exit(code)
}
