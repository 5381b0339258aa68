package systemd

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/senhasegura/orbit/internal/testenv"
	"github.com/senhasegura/orbit/internal/testenv/sandbox"
)

// The sandbox (internal/testenv/sandbox) is a real systemd as PID 1 of a
// private PID and mount namespace: TestSandboxInner, run inside it, talks to
// its real D-Bus API and reads its real journal. /etc is an overlay there,
// so the service user is created inside only, and /var/lib/orbit (the
// unit's StateDirectory) is a tmpfs, so nothing the service writes reaches
// the host.

const (
	sandboxInnerEnv = sandbox.InnerEnv
	sandboxDirEnv   = "ORBIT_SYSTEMD_SANDBOX_DIR"
)

// TestSandbox boots the sandbox and runs TestSandboxInner inside it, with
// this test binary copied where the sandbox can see it. The copy also
// serves as the service's binary: its path holds a space and a '%' so that
// ExecStart quoting is exercised for real.
func TestSandbox(t *testing.T) {
	if sandbox.Inside() {
		t.Skip("already inside the sandbox")
	}
	s := sandbox.BootWith(t, sandbox.Options{Tmpfs: []string{"/var/lib/orbit"}})
	dir := testenv.SharedDir(t)
	bin := sandbox.CopyTestBinary(t, filepath.Join(dir, "bin dir", "orbit%test"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s.RunTest(ctx, t, bin, "TestSandboxInner", sandboxDirEnv+"="+dir)
}
