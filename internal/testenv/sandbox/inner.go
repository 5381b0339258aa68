package sandbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// InnerEnv is set to 1 in the environment of a test binary that RunTest
// started inside a sandbox.
const InnerEnv = "ORBIT_SANDBOX_INNER"

// Inside reports whether this process is a test binary RunTest started
// inside a sandbox. The inner test skips unless it is; the outer one skips
// when it is, so the sandbox does not boot another sandbox.
func Inside() bool { return os.Getenv(InnerEnv) == "1" }

// CopyTestBinary copies the running test binary to path, mode 0755, with
// every directory it creates traversable, and returns path. The go tool
// builds test binaries under /tmp, which the sandbox hides, so the copy
// must live elsewhere (under testenv.SharedDir); the path may hold
// characters a unit file must quote, to exercise that for real.
func CopyTestBinary(t testing.TB, path string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("sandbox: finding this test binary: %v", err)
	}
	if err := copyExecutable(self, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("sandbox: copying the test binary: %w", err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("sandbox: copying the test binary: %w", err)
	}
	if err := os.Chmod(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("sandbox: copying the test binary: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("sandbox: copying the test binary: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("sandbox: copying the test binary to %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("sandbox: copying the test binary to %s: %w", dst, err)
	}
	return nil
}

// RunTest runs the test named name (an exact name, not a pattern) of the
// test binary bin inside the sandbox, with InnerEnv=1 and env in its
// environment, logs its verbose output to t, and fails t unless it passed.
// A skip inside counts as a failure: the inner test is there to run.
func (s *Sandbox) RunTest(ctx context.Context, t testing.TB, bin, name string, env ...string) {
	t.Helper()
	r := s.Exec(ctx, append([]string{InnerEnv + "=1"}, env...),
		bin, "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	for _, line := range strings.Split(strings.TrimRight(r.Stdout+r.Stderr, "\n"), "\n") {
		t.Log(line)
	}
	switch {
	case r.Code != 0:
		t.Fatalf("%s inside the sandbox failed (exit %d)", name, r.Code)
	case !strings.Contains(r.Stdout, "--- PASS: "+name+" "):
		t.Fatalf("%s inside the sandbox did not report a pass (skipped, or no such test)", name)
	}
}
