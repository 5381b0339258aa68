package secretflag

import (
	"testing"

	"github.com/spf13/pflag"
)

func TestMarkAndFileFlag(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("token", "", "")
	fs.String("token-file", "", "")
	fs.String("name", "", "")
	Mark(fs, "token", "token-file")
	if f, ok := FileFlag(fs.Lookup("token")); !ok || f != "token-file" {
		t.Errorf("FileFlag(--token) = %q, %v; want token-file, true", f, ok)
	}
	for _, n := range []string{"name", "token-file", "absent"} {
		if _, ok := FileFlag(fs.Lookup(n)); ok {
			t.Errorf("--%s reported secret", n)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("marking with a file flag that does not exist did not panic")
		}
	}()
	Mark(fs, "name", "name-file")
}
