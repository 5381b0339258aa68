package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/pkg/emailproxy/config"
	"github.com/senhasegura/orbit/pkg/emailproxy/oauth"
)

// CredentialMaker creates background_refresh's service key
// (docs/background-refresh.md) as a systemd credential, so that the
// administrator's only step is background_refresh = True: start, restart,
// reload and register's hook call Ensure before the unit is rendered, and
// the unit then loads it with LoadCredentialEncrypted=.
type CredentialMaker struct {
	// Store is the directory of encrypted credentials
	// (/etc/credstore.encrypted).
	Store string
	// Command is systemd-creds ("systemd-creds" is looked up in $PATH).
	Command string
}

// DefaultCredentials is the running system's.
var DefaultCredentials = CredentialMaker{Store: CredentialStore, Command: "systemd-creds"}

// credentialKeyBytes is the size of the random service key; the engine
// takes its SHA-256 (oauth.ReadBackgroundKey).
const credentialKeyBytes = 32

// credsTimeout bounds each systemd-creds run: a TPM2 can be slow, but a
// start must never hang on it.
const credsTimeout = 30 * time.Second

// Ensure creates the credential when the file at cfgPath sets
// background_refresh = True and the credential does not exist yet. An
// existing one is never replaced: every sealed copy in
// background-refresh.json was made with it. The key is 32 bytes from
// crypto/rand that reach systemd-creds through a pipe on its standard
// input and exist nowhere else in the clear; what systemd-creds writes on
// its standard output (the encrypted credential) is written atomically,
// 0600, without ever replacing a file.
func (c CredentialMaker) Ensure(ctx context.Context, cfgPath string) ([]string, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil || !cfg.Global.BackgroundRefresh {
		// A file that does not load is start's to report.
		return nil, nil
	}
	path := filepath.Join(c.Store, oauth.BackgroundCredential)
	switch _, err := os.Lstat(path); {
	case err == nil:
		return nil, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, c.failed(path, fmt.Errorf("checking for it: %w", err))
	}
	bin, err := exec.LookPath(c.Command)
	if err != nil {
		return nil, c.failed(path, fmt.Errorf("%s is not installed (it comes with systemd 250 or later, which LoadCredentialEncrypted= needs too)", c.Command))
	}
	withKey, how := "host", "with this host's key (/var/lib/systemd/credential.secret; no TPM2 here)"
	if c.hasTPM2(ctx, bin) {
		withKey, how = "host+tpm2", "with the TPM2 and this host's key (a copy of the disk cannot open it)"
	}
	sealed, err := c.encrypt(ctx, bin, withKey)
	if err != nil {
		return nil, c.failed(path, err)
	}
	made, err := createExclusive(path, sealed)
	if err != nil {
		return nil, c.failed(path, err)
	}
	if !made {
		// Another start made it meanwhile: that one is kept.
		return nil, nil
	}
	return []string{fmt.Sprintf("Created the credential %s for background_refresh: %d random bytes encrypted by %s %s.", path, credentialKeyBytes, c.Command, how)}, nil
}

// hasTPM2 asks systemd-creds whether firmware, driver and system support
// a TPM2 (exit 0 only when all do).
func (c CredentialMaker) hasTPM2(ctx context.Context, bin string) bool {
	ctx, cancel := context.WithTimeout(ctx, credsTimeout)
	defer cancel()
	return exec.CommandContext(ctx, bin, "has-tpm2", "--quiet").Run() == nil
}

func (c CredentialMaker) encrypt(ctx context.Context, bin, withKey string) ([]byte, error) {
	key := make([]byte, credentialKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	defer clear(key)
	ctx, cancel := context.WithTimeout(ctx, credsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "encrypt", "--name="+oauth.BackgroundCredential, "--with-key="+withKey, "-", "-")
	// A bytes.Reader is not a file: exec hands it over through a pipe.
	cmd.Stdin = bytes.NewReader(key)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errOut.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("%s encrypt --with-key=%s failed: %s", c.Command, withKey, msg)
	}
	if out.Len() == 0 {
		return nil, fmt.Errorf("%s encrypt --with-key=%s wrote nothing", c.Command, withKey)
	}
	return out.Bytes(), nil
}

// createExclusive writes data to path, mode 0600, atomically and only if
// path does not exist: made is false when it did (nothing was changed).
func createExclusive(path string, data []byte) (made bool, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	// link, unlike rename, fails when the name exists.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return true, nil
}

func (c CredentialMaker) failed(path string, err error) error {
	return exitcode.Withf(exitcode.Credential,
		"background_refresh = True, but its credential %s could not be created: %v.\n"+
			"The proxy runs without it: tokens are kept alive only while it runs.\n"+
			"Fix the cause, then run: orbit email-oauth2-proxy restart\n"+
			"(or create it yourself: head -c 32 /dev/urandom | systemd-creds encrypt --name=%s - %s; or set background_refresh = False)",
		path, err, oauth.BackgroundCredential, path)
}
