// Package golden compares a test's output with a file under the package's
// testdata directory; `go test -update` rewrites the files instead, for
// when a change of output is intended.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// Check fails t unless got equals testdata/name byte for byte. With
// -update it first writes got there (creating testdata/).
func Check[T ~string | ~[]byte](t testing.TB, name string, got T) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run '%s' -update to create it)", err, t.Name())
	}
	if !bytes.Equal([]byte(got), want) {
		t.Errorf("%s differs from the output (go test -update rewrites it if the change is intended):\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}
