package journal

import (
	"os/exec"
	"strings"
	"testing"
)

// TestKnowsNoEmail: this package is shared by every command family, so it
// must not depend on the e-mail proxy's packages (issue 12); what is
// specific to the proxy lives under pkg/emailproxy.
func TestKnowsNoEmail(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go tool is needed to list dependencies: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "/pkg/emailproxy") {
			t.Errorf("depends on %s; move the e-mail specific part under pkg/emailproxy", dep)
		}
	}
}
