package tokens

import (
	"context"
	"fmt"

	"github.com/senhasegura/orbit/pkg/emailproxy/config"
)

// InlineImport is one account's tokens as a Python proxy wrote them inline
// into its config file, for ImportAll.
type InlineImport struct {
	Account string
	Tokens  config.InlineTokens
	// ClientSecretEncrypted is the account's client_secret_encrypted,
	// sealed with the same salt.
	ClientSecretEncrypted string
}

// ImportOutcome is what ImportAll did with one account's inline tokens:
// Result as Import returns it, or Err when Import would have failed.
type ImportOutcome struct {
	Account string
	Result  ImportResult
	Err     error
}

// ImportAll is Import for many accounts at once, with the same result for
// each as importing them one by one in the given order, in one locked read
// and at most one atomic write of the store. Import re-reads and rewrites
// the whole store per account, so a config of 20,000 accounts with inline
// tokens took about an hour to start (issue 11); this is linear. Outcomes
// are in the order of items. A failed write fails only the accounts that
// needed it; a failed lock or read fails every account with tokens.
func (s *FileStore) ImportAll(ctx context.Context, items []InlineImport) []ImportOutcome {
	out := make([]ImportOutcome, len(items))
	ins := make([]Sealed, len(items))
	todo := make([]int, 0, len(items))
	for i, it := range items {
		out[i].Account = it.Account
		in, err := inlineSealed(it)
		switch {
		case err != nil:
			out[i].Err = err
		case in.HasSecrets():
			ins[i] = in
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return out
	}
	ran := false
	err := s.update(ctx, func(e *config.Editor) (bool, error) {
		ran = true
		// An account named twice compares with its first import, as one
		// Import after the other would.
		latest := make(map[string]Sealed, len(todo))
		edits := make([]config.SectionEdit, 0, len(todo))
		at := make(map[string]int, len(todo)) // account -> index in edits
		for _, i := range todo {
			account, in := items[i].Account, ins[i]
			cur, ok := latest[account]
			var curErr error
			if !ok {
				cur, curErr = entryOf(e, account)
			}
			if curErr == nil {
				switch {
				case cur == in:
					out[i].Result = ImportSame
					continue
				case !newer(in, cur):
					out[i].Result = ImportStoreNewer
					continue
				}
			}
			out[i].Result = Imported
			latest[account] = in
			if j, ok := at[account]; ok {
				edits[j].Keys = append(edits[j].Keys, entryEdits(in)...)
				continue
			}
			at[account] = len(edits)
			edits = append(edits, config.SectionEdit{Section: account, Keys: entryEdits(in)})
		}
		if len(edits) == 0 {
			return false, nil
		}
		if err := e.EditSections(edits); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		for _, i := range todo {
			// Accounts already in the store needed no write and keep their
			// result, unless the store could not even be read.
			if !ran || out[i].Result == Imported {
				out[i].Result, out[i].Err = ImportNone, err
			}
		}
	}
	return out
}

// inlineSealed checks an account's inline tokens and returns them as a
// store entry; an entry without secrets means there is nothing to import.
func inlineSealed(it InlineImport) (Sealed, error) {
	t := it.Tokens
	in := Sealed{
		Salt:                  t.TokenSalt,
		Iterations:            t.TokenIterations,
		AccessToken:           t.AccessToken,
		AccessTokenExpiry:     t.AccessTokenExpiry,
		RefreshToken:          t.RefreshToken,
		LastActivity:          t.LastActivity,
		ClientSecretEncrypted: it.ClientSecretEncrypted,
	}
	if !in.HasSecrets() {
		return Sealed{}, nil
	}
	if in.Salt == "" {
		return Sealed{}, fmt.Errorf("config section [%s] holds encrypted tokens but no token_salt, so no password can open them: remove its access_token/refresh_token keys and authorise the account again: %w", it.Account, ErrCorrupt)
	}
	if _, err := decodeSalt(in.Salt); err != nil {
		return Sealed{}, fmt.Errorf("config section [%s]: %w: %w", it.Account, ErrCorrupt, err)
	}
	return in, nil
}

// entryEdits are setEntry's changes as a batch: the account's section gets
// exactly e's token keys, the others of its keys stay.
func entryEdits(e Sealed) []config.KeyEdit {
	vals := [...]config.KeyEdit{
		{Key: keySalt, Value: e.Salt},
		{Key: keyIterations, Value: positive(int64(e.Iterations))},
		{Key: keyAccess, Value: e.AccessToken},
		{Key: keyAccessExpiry, Value: nonZero(e.AccessTokenExpiry)},
		{Key: keyRefresh, Value: e.RefreshToken},
		{Key: keyLastActivity, Value: nonZero(e.LastActivity)},
		{Key: keyClientSecret, Value: e.ClientSecretEncrypted},
	}
	out := vals[:]
	for i := range out {
		out[i].Delete = out[i].Value == ""
	}
	return out
}
