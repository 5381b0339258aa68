package family

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyTheFamilyKnowsEmail enforces the layout of issue 12: the e-mail
// proxy's domain (pkg/emailproxy) is used by its family
// (internal/cli/emailproxy) and by the end-to-end tests, and by nothing else
// under internal/ or pkg/journal, which every family shares. A shared
// package that imports it is in the wrong place: move the e-mail part into
// pkg/emailproxy or the family, and let the shared part take it as a
// parameter or hook.
func TestOnlyTheFamilyKnowsEmail(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go tool is needed to list imports: %v", err)
	}
	const mod = "github.com/senhasegura/orbit/"
	out, err := exec.Command(goBin, "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`,
		mod+"internal/...", mod+"pkg/journal/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := []string{
		mod + "internal/cli/emailproxy",
		mod + "internal/e2e",
		// The documentation generator renders every family's reference,
		// the e-mail proxy's error catalogue included.
		mod + "internal/gendocs",
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 10 {
		t.Fatalf("go list found only %d packages; is the test run inside the module?", len(lines))
	}
	for _, line := range lines {
		f := strings.Fields(line)
		pkg := f[0]
		ok := false
		for _, a := range allowed {
			if pkg == a || strings.HasPrefix(pkg, a+"/") {
				ok = true
			}
		}
		if ok {
			continue
		}
		for _, imp := range f[1:] {
			if imp == mod+"pkg/emailproxy" || strings.HasPrefix(imp, mod+"pkg/emailproxy/") {
				t.Errorf("%s imports %s; shared packages must not know the e-mail proxy (move that part into pkg/emailproxy or internal/cli/emailproxy)", strings.TrimPrefix(pkg, mod), strings.TrimPrefix(imp, mod))
			}
		}
	}
}
