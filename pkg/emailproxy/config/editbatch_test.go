package config

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// sequentially is what EditSections promises to equal: Set and Delete one
// by one, existing sections' edits first, then the new sections in order.
func sequentially(e *Editor, edits []SectionEdit) error {
	var added []SectionEdit
	apply := func(se SectionEdit) error {
		for _, k := range se.Keys {
			if k.Delete {
				e.Delete(se.Section, k.Key)
				continue
			}
			if err := e.Set(se.Section, k.Key, k.Value); err != nil {
				return err
			}
		}
		return nil
	}
	for _, se := range edits {
		if !e.HasSection(se.Section) {
			added = append(added, se)
			continue
		}
		if err := apply(se); err != nil {
			return err
		}
	}
	for _, se := range added {
		if err := apply(se); err != nil {
			return err
		}
	}
	return nil
}

// TestEditSectionsEqualsSetAndDelete: on hand-picked awkward files and on
// random ones, a batch gives byte for byte the file of the same edits made
// one by one (continuation lines, comments inside and after sections,
// [DEFAULT], CRLF, no final newline, blank-separated or not, new sections).
func TestEditSectionsEqualsSetAndDelete(t *testing.T) {
	files := []string{
		"",
		"[a]",
		"[a]\nk = 1",
		"# top\n[a]\nk = 1\n  cont\n# between\nj = 2\n\n# about b\n[b]\nx = y\n",
		"[DEFAULT]\nd = 1\n[a]\nk = 1\n\n\nj = 2\n[b]\n[c]\n  x = 1\n    y\n; tail\n",
		"[a]\r\nk = 1\r\n\r\n[b]\r\nj = 2\r\n",
		"[a]\nk = 1\n\nj = 2\n[b]\nq = 1\n",
		"[a]\nK=1\n# c\nj:2\n\n# about b\n[b]\nx: y\n\n[c]\n",
		"[a]\n  k = 1\n  j = 2\n[b]\n\tx = 1\n",
		"# only a comment\n",
		"\n\n[only]\n\n",
	}
	keys := []string{"k", "j", "x", "K", "token_salt", "access_token", "refresh_token", "last_activity"}
	sections := []string{"a", "b", "c", "DEFAULT", "new1", "new2", "new3", "new4", "new5", "user@example.com"}
	rng := rand.New(rand.NewPCG(1, 2))
	randomEdits := func() []SectionEdit {
		var out []SectionEdit
		perm := rng.Perm(len(sections))
		for _, i := range perm[:rng.IntN(len(sections)+1)] {
			se := SectionEdit{Section: sections[i]}
			for range rng.IntN(6) {
				k := KeyEdit{Key: keys[rng.IntN(len(keys))], Delete: rng.IntN(3) == 0}
				if !k.Delete {
					k.Value = fmt.Sprintf("v%d", rng.IntN(100))
					switch rng.IntN(12) {
					case 0:
						k.Value += "\nsecond line"
					case 1:
						k.Value = ""
					case 2:
						k.Value = "  spaced  "
					case 3:
						k.Value += "\n\n# not a comment\nlast"
					case 4:
						k.Value += "\n"
					}
				}
				se.Keys = append(se.Keys, k)
			}
			out = append(out, se)
		}
		return out
	}
	for _, in := range files {
		for range 300 {
			edits := randomEdits()
			want, werr := Edit([]byte(in), "x", func(e *Editor) error { return sequentially(e, edits) })
			got, gerr := Edit([]byte(in), "x", func(e *Editor) error { return e.EditSections(edits) })
			if (werr != nil) != (gerr != nil) || string(got) != string(want) {
				t.Fatalf("file %q, edits %+v:\nbatch (%v)\n%q\none by one (%v)\n%q", in, edits, gerr, got, werr, want)
			}
		}
	}
}

func TestEditSectionsKeepsTheFileOnError(t *testing.T) {
	const in = "[a]\nk = 1\n"
	out, err := Edit([]byte(in), "x", func(e *Editor) error {
		err := e.EditSections([]SectionEdit{
			{Section: "a", Keys: []KeyEdit{{Key: "k", Value: "2"}}},
			{Section: "b", Keys: []KeyEdit{{Key: "bad=key", Value: "1"}}},
		})
		if err == nil {
			t.Error("a key name with '=' was accepted")
		}
		if v, _ := e.Get("a", "k"); v != "1" {
			t.Errorf("after a failed batch [a] k = %q, want the old 1", v)
		}
		return nil
	})
	if err != nil || string(out) != in {
		t.Errorf("failed batch left %q (%v), want %q", out, err, in)
	}
	_, err = Edit([]byte(in), "x", func(e *Editor) error {
		return e.EditSections([]SectionEdit{{Section: "a"}, {Section: "a"}})
	})
	if err == nil || !strings.Contains(err.Error(), "named twice") {
		t.Errorf("a section named twice: %v", err)
	}
}

// BenchmarkEditSections is the token store's batch import shape: 20,000
// new sections of seven keys into an empty file, then the same 20,000
// edited in place. Linear: one parse, not one per key.
func BenchmarkEditSections(b *testing.B) {
	const n = 20000
	edits := make([]SectionEdit, n)
	for i := range edits {
		edits[i] = SectionEdit{Section: fmt.Sprintf("user%d@example.com", i)}
		for _, k := range []string{"token_salt", "token_iterations", "access_token", "access_token_expiry", "refresh_token", "last_activity", "client_secret_encrypted"} {
			edits[i].Keys = append(edits[i].Keys, KeyEdit{Key: k, Value: "value-of-" + k})
		}
	}
	full, err := Edit(nil, "x", func(e *Editor) error { return e.EditSections(edits) })
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{{"new", nil}, {"in-place", full}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := Edit(tc.in, "x", func(e *Editor) error { return e.EditSections(edits) }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
