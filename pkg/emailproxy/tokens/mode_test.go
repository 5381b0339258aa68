package tokens

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// TestFileStoreTightensMode: a store left readable by others (a hand copy,
// an older version, a restore from backup) is 0600 again after every kind
// of write, since renameio.WriteFile alone would keep the old mode.
func TestFileStoreTightensMode(t *testing.T) {
	ctx := context.Background()
	writes := []struct {
		name  string
		write func(s *FileStore) error
	}{
		{"Put", func(s *FileStore) error { return s.Put(ctx, "a@x", "pw", sampleRecord()) }},
		{"Delete", func(s *FileStore) error { return s.Delete(ctx, "a@x") }},
		{"Import", func(s *FileStore) error {
			_, err := s.Import(ctx, "b@x", config.InlineTokens{TokenSalt: "AAAAAAAAAAAAAAAAAAAAAA==", RefreshToken: "gAAAAAx", LastActivity: 1}, "")
			return err
		}},
	}
	for _, w := range writes {
		for _, old := range []os.FileMode{0o644, 0o666, 0o640, 0o604} {
			t.Run(w.name+"/"+old.String(), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "tokens.cache")
				s := newTestStore(t, path, nil)
				if err := s.Put(ctx, "a@x", "pw", sampleRecord()); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, old); err != nil {
					t.Fatal(err)
				}
				if err := w.write(s); err != nil {
					t.Fatal(err)
				}
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("after %s a store that was %v is %v, want -rw-------", w.name, old, fi.Mode().Perm())
				}
			})
		}
	}
}
