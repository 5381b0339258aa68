package oauth

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// writeStateFile replaces path with v as indented JSON, atomically, at
// mode whatever mode the old file had, creating the state directory when it
// is missing. renameio.WriteFile would add WithExistingPermissions after
// the caller's options and keep an older, looser mode (issue 10's token
// store bug), so the options are spelled out here, in this order, once for
// every state file the engine writes.
func writeStateFile(path string, v any, mode os.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	pf, err := renameio.NewPendingFile(path,
		renameio.WithPermissions(mode),
		renameio.WithStaticPermissions(mode),
		renameio.WithTempDir(filepath.Dir(path)))
	if err != nil {
		return err
	}
	defer pf.Cleanup()
	if _, err := pf.Write(data); err != nil {
		return err
	}
	return pf.CloseAtomicallyReplace()
}
