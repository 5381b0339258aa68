package tokens

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// TestImportAll: one batch over a store that already holds some of the
// accounts gives each account the result Import gives it, the store the
// bytes the Imports one by one give it, and the file one write.
func TestImportAll(t *testing.T) {
	ctx := context.Background()
	c := fastCodec()
	seal := func(account, rt string, last int64) Sealed {
		t.Helper()
		s, err := c.Seal(ctx, account, "pw", Record{RefreshToken: rt, AccessToken: "at-" + rt, ClientSecret: "cs",
			AccessTokenExpiry: time.Unix(last+3600, 0), LastActivity: time.Unix(last, 0)}, "")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	inlineOf := func(account string, e Sealed) InlineImport {
		return InlineImport{Account: account, ClientSecretEncrypted: e.ClientSecretEncrypted, Tokens: config.InlineTokens{
			TokenSalt: e.Salt, TokenIterations: e.Iterations, AccessToken: e.AccessToken, AccessTokenExpiry: e.AccessTokenExpiry,
			RefreshToken: e.RefreshToken, LastActivity: e.LastActivity}}
	}
	same := seal("same@x", "same-rt", 1000)
	storeNewer := seal("newer@x", "store-rt", 9000)
	storeOlder := seal("older@x", "old-store-rt", 10)
	// The store was written by hand or by another tool: a comment, an
	// unrelated key and a corrupt entry that an import may replace.
	store := "# kept\n[same@x]\n" + sectionText(t, same) +
		"\n[newer@x]\n" + sectionText(t, storeNewer) +
		"\n[older@x]\nnote = kept\n" + sectionText(t, storeOlder) +
		"\n[corrupt@x]\ntoken_iterations = many\nrefresh_token = gAAAAAxx\n"
	items := []InlineImport{
		inlineOf("new@x", seal("new@x", "new-rt", 500)),
		inlineOf("same@x", same),
		inlineOf("newer@x", seal("newer@x", "inline-rt", 100)),
		inlineOf("older@x", seal("older@x", "inline-older-rt", 200)),
		inlineOf("corrupt@x", seal("corrupt@x", "inline-corrupt-rt", 300)),
		{Account: "nosalt@x", Tokens: config.InlineTokens{RefreshToken: "gAAAAAyy"}},
		{Account: "nothing@x", Tokens: config.InlineTokens{TokenSalt: same.Salt, LastActivity: 5}},
		inlineOf("new2@x", seal("new2@x", "new2-rt", 600)),
	}
	want := map[string]ImportResult{
		"new@x": Imported, "same@x": ImportSame, "newer@x": ImportStoreNewer, "older@x": Imported,
		"corrupt@x": Imported, "nosalt@x": ImportNone, "nothing@x": ImportNone, "new2@x": Imported,
	}

	// One by one, as the engine did before.
	seqPath := filepath.Join(t.TempDir(), "tokens.cache")
	if err := os.WriteFile(seqPath, []byte(store), 0o600); err != nil {
		t.Fatal(err)
	}
	seq := newTestStore(t, seqPath, c)
	for _, it := range items {
		res, err := seq.Import(ctx, it.Account, it.Tokens, it.ClientSecretEncrypted)
		if res != want[it.Account] || (err != nil) != (it.Account == "nosalt@x") {
			t.Fatalf("Import(%s) = %v, %v; want %v", it.Account, res, err, want[it.Account])
		}
	}

	path := filepath.Join(t.TempDir(), "tokens.cache")
	if err := os.WriteFile(path, []byte(store), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newTestStore(t, path, c)
	writes := 0
	s.writeFile = func(p string, data []byte) error { writes++; return writeAtomic(p, data) }
	got := s.ImportAll(ctx, items)
	if len(got) != len(items) {
		t.Fatalf("%d outcomes for %d accounts", len(got), len(items))
	}
	for i, o := range got {
		if o.Account != items[i].Account || o.Result != want[o.Account] {
			t.Errorf("outcome %d = %+v, want %s %v", i, o, items[i].Account, want[items[i].Account])
		}
		if wantErr := o.Account == "nosalt@x"; (o.Err != nil) != wantErr || wantErr && !errors.Is(o.Err, ErrCorrupt) {
			t.Errorf("%s: error %v", o.Account, o.Err)
		}
	}
	if writes != 1 {
		t.Errorf("%d writes of the store, want 1", writes)
	}
	if a, b := mustRead(t, path), mustRead(t, seqPath); a != b {
		t.Errorf("batch store differs from one-by-one store:\n%s\n--- one by one:\n%s", a, b)
	}
	for account, rt := range map[string]string{"new@x": "new-rt", "same@x": "same-rt", "newer@x": "store-rt",
		"older@x": "inline-older-rt", "corrupt@x": "inline-corrupt-rt", "new2@x": "new2-rt"} {
		if rec, err := s.Get(ctx, account, "pw"); err != nil || rec.RefreshToken != rt {
			t.Errorf("%s after the batch: %+v, %v; want refresh token %s", account, rec, err, rt)
		}
	}
	if text := mustRead(t, path); !strings.Contains(text, "# kept") || !strings.Contains(text, "note = kept") {
		t.Errorf("the batch lost lines it does not own:\n%s", text)
	}

	// Again: everything is in the store now, nothing is written.
	writes = 0
	for _, o := range s.ImportAll(ctx, items) {
		if o.Result == Imported {
			t.Errorf("second batch imported %s again", o.Account)
		}
	}
	if writes != 0 {
		t.Errorf("second batch wrote the store %d times", writes)
	}
}

// TestImportAllFailedWrite: a write that fails fails the accounts that
// needed it, and the store keeps its old content.
func TestImportAllFailedWrite(t *testing.T) {
	ctx := context.Background()
	c := fastCodec()
	path := filepath.Join(t.TempDir(), "tokens.cache")
	s := newTestStore(t, path, c)
	e, err := c.Seal(ctx, "a@x", "pw", Record{RefreshToken: "rt", LastActivity: time.Unix(10, 0)}, "")
	if err != nil {
		t.Fatal(err)
	}
	it := InlineImport{Account: "a@x", Tokens: config.InlineTokens{TokenSalt: e.Salt, TokenIterations: e.Iterations,
		RefreshToken: e.RefreshToken, LastActivity: e.LastActivity}}
	s.writeFile = func(string, []byte) error { return errors.New("disk full") }
	o := s.ImportAll(ctx, []InlineImport{it, {Account: "b@x"}})
	if o[0].Result != ImportNone || o[0].Err == nil || !strings.Contains(o[0].Err.Error(), "disk full") {
		t.Errorf("a@x = %+v, want the write error", o[0])
	}
	if o[1].Result != ImportNone || o[1].Err != nil {
		t.Errorf("b@x (nothing inline) = %+v", o[1])
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed write left a store: %v", err)
	}
}

// sectionText is an entry's keys as the store writes them.
func sectionText(t *testing.T, e Sealed) string {
	t.Helper()
	out := string(cacheWith(t, "s", e))
	return strings.TrimPrefix(out, "[s]\n")
}
