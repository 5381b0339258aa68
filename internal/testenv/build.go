package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// OrbitBinEnv names an environment variable that, when set, points at an
// already built orbit binary, so a CI step that built it once can share it
// with every test binary.
const OrbitBinEnv = "ORBIT_BIN"

var orbitBuild struct {
	sync.Mutex
	path, dir string
	err       error
	took      time.Duration
}

// BuildOrbit builds the module's ./cmd/orbit once per test binary (static,
// CGO_ENABLED=0, so it also runs inside the systemd sandbox) and returns the
// binary's path; later calls return the same path. The binary lives under
// SharedRoot, outside /tmp, so the sandbox sees it. Call Main from TestMain
// to remove it when the test binary ends; leftovers of test binaries that
// died are removed by the next build.
func BuildOrbit(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(OrbitBinEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", OrbitBinEnv, p, err)
		}
		return p
	}
	orbitBuild.Lock()
	defer orbitBuild.Unlock()
	if orbitBuild.path == "" && orbitBuild.err == nil {
		start := time.Now()
		orbitBuild.path, orbitBuild.dir, orbitBuild.err = buildOrbit()
		orbitBuild.took = time.Since(start)
		if orbitBuild.err == nil {
			t.Logf("built %s in %v", orbitBuild.path, orbitBuild.took.Round(time.Millisecond))
		}
	}
	if orbitBuild.err != nil {
		t.Fatal(orbitBuild.err)
	}
	return orbitBuild.path
}

func buildOrbit() (bin, dir string, err error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", "", err
	}
	base := SharedRoot
	if err := mkdirShared(base); err != nil {
		base = os.TempDir()
	}
	removeStaleBuilds(base)
	dir = filepath.Join(base, "build-"+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("creating %s for the orbit build: %w", dir, err)
	}
	bin = filepath.Join(dir, "orbit")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/orbit")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", "", fmt.Errorf("go build ./cmd/orbit in %s: %w\n%s", root, err, out)
	}
	return bin, dir, nil
}

// removeStaleBuilds deletes build-PID directories whose test binary is gone.
func removeStaleBuilds(base string) {
	matches, _ := filepath.Glob(filepath.Join(base, "build-*"))
	for _, m := range matches {
		pid, err := strconv.Atoi(filepath.Base(m)[len("build-"):])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); os.IsNotExist(err) {
			os.RemoveAll(m)
		}
	}
}

// ModuleRoot finds the directory holding the module's go.mod, walking up
// from the working directory (go test runs in the package's directory).
func ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s: run the tests from inside the orbit module", wd)
		}
	}
}

// Main runs the tests and then removes what BuildOrbit built. Use it as
// func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	orbitBuild.Lock()
	if orbitBuild.dir != "" {
		os.RemoveAll(orbitBuild.dir)
	}
	orbitBuild.Unlock()
	os.Exit(code)
}
