package config

import (
	"strings"
	"testing"
)

func TestEditRoundTripAndLineEndings(t *testing.T) {
	for _, in := range []string{
		"",
		"[s]\nk = v",
		"\ufeff# c\r\n[s]\r\nk = v\r\n  more\r\n\r\n; end\r\n",
		"[a]\n\n\n[b]\nx:y\n",
	} {
		out, err := Edit([]byte(in), "x", func(*Editor) error { return nil })
		if err != nil || string(out) != in {
			t.Errorf("no-op edit changed %q into %q (%v)", in, out, err)
		}
	}
	out, err := Edit([]byte("[s]\r\nk = v\r\n"), "x", func(e *Editor) error { return e.Set("s", "n", "1") })
	if err != nil || string(out) != "[s]\r\nk = v\r\nn = 1\r\n" {
		t.Errorf("CRLF file edited into %q (%v)", out, err)
	}
}

func TestEditor(t *testing.T) {
	const in = "# top\n[a]\nk = 1\n  cont\n# between\nj = 2\n\n# about b\n[b]\nx = y\n"
	tests := []struct {
		name string
		fn   func(e *Editor) error
		want string
	}{
		{"replace multi-line value in place", func(e *Editor) error { return e.Set("a", "K", "new") },
			"# top\n[a]\nk = new\n# between\nj = 2\n\n# about b\n[b]\nx = y\n"},
		{"append key after the last key", func(e *Editor) error { return e.Set("a", "z", "3") },
			"# top\n[a]\nk = 1\n  cont\n# between\nj = 2\nz = 3\n\n# about b\n[b]\nx = y\n"},
		{"new section at the end, blank-separated like the file", func(e *Editor) error { return e.Set("c", "q", "r") },
			"# top\n[a]\nk = 1\n  cont\n# between\nj = 2\n\n# about b\n[b]\nx = y\n\n[c]\nq = r\n"},
		{"new section before b stays above b's comment", func(e *Editor) error { return e.AddSection("new", "b") },
			"# top\n[a]\nk = 1\n  cont\n# between\nj = 2\n\n[new]\n\n# about b\n[b]\nx = y\n"},
		{"delete key", func(e *Editor) error { e.Delete("a", "j"); return nil },
			"# top\n[a]\nk = 1\n  cont\n# between\n\n# about b\n[b]\nx = y\n"},
		{"rename key keeps value and place", func(e *Editor) error { return e.RenameKey("a", "j", "jj") },
			"# top\n[a]\nk = 1\n  cont\n# between\njj = 2\n\n# about b\n[b]\nx = y\n"},
		{"rename section", func(e *Editor) error { return e.RenameSection("b", "B") },
			"# top\n[a]\nk = 1\n  cont\n# between\nj = 2\n\n# about b\n[B]\nx = y\n"},
		{"delete section", func(e *Editor) error { e.DeleteSection("a"); return nil },
			"# top\n\n# about b\n[b]\nx = y\n"},
		{"multi-line value written with tab continuation", func(e *Editor) error { return e.Set("b", "x", "l1\nl2") },
			"# top\n[a]\nk = 1\n  cont\n# between\nj = 2\n\n# about b\n[b]\nx = l1\n\tl2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Edit([]byte(in), "x", tt.fn)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", out, tt.want)
			}
		})
	}
	for name, fn := range map[string]func(e *Editor) error{
		"key with delimiter":   func(e *Editor) error { return e.Set("a", "x=y", "1") },
		"section with newline": func(e *Editor) error { return e.AddSection("a\nb", "") },
		"rename onto existing": func(e *Editor) error { return e.RenameSection("a", "b") },
		"rename missing":       func(e *Editor) error { return e.RenameSection("zz", "yy") },
	} {
		if _, err := Edit([]byte(in), "x", fn); err == nil || !strings.Contains(err.Error(), "") {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestEditorKeysFollowEdits(t *testing.T) {
	_, err := Edit([]byte("[DEFAULT]\nd = 1\n[a]\nK = 1\n  cont\n# c\nj: 2\n"), "x", func(e *Editor) error {
		if got := strings.Join(e.Keys("a"), ","); got != "k,j" {
			t.Errorf("Keys before edits = %q, want own keys in file order without [DEFAULT]'s", got)
		}
		if err := e.Set("a", "z", "3"); err != nil {
			return err
		}
		e.Delete("a", "k")
		if got := strings.Join(e.Keys("a"), ","); got != "j,z" {
			t.Errorf("Keys after edits = %q", got)
		}
		if e.Keys("missing") != nil {
			t.Error("Keys of a missing section is not nil")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
