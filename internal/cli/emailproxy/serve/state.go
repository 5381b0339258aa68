package serve

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/senhasegura/orbit/internal/cli/emailproxy/service"
	"github.com/senhasegura/orbit/internal/systemd"
)

// stateHandover is what serve run as root does for the unit that will
// run later as the service user: the token store and the status file it
// writes live in the unit's state directory, so that directory (and the
// ones above it) are made usable by that user before the engine starts and
// again when it stops. Without that, a foreground test as root leaves a
// 0700 root /var/lib/orbit (the unit then fails with 200/CHDIR) and a
// token store the unit cannot read.
type stateHandover struct {
	dir  string
	user systemd.ServiceUser
	log  *slog.Logger
}

// newStateHandover returns nil when there is nothing to hand over: serve
// is not root, its files are elsewhere, or the service user does not
// exist yet (then `start` hands the directory over before it starts the
// unit).
func newStateHandover(log *slog.Logger, tokenPath, statusPath string) *stateHandover {
	if os.Geteuid() != 0 {
		return nil
	}
	userName, stateDir := service.DefaultUser, service.DefaultStateDirectory
	if cur, err := service.Description.ReadInstalled("", service.DefaultUnit); err == nil {
		if cur.User != "" {
			userName = cur.User
		}
		if cur.StateDirectory != "" {
			stateDir = cur.StateDirectory
		}
	}
	dir := systemd.StateDirPath("", stateDir)
	inDir := func(p string) bool {
		if p == "" || p == "-" {
			return false
		}
		a, err := filepath.Abs(p)
		return err == nil && strings.HasPrefix(a, dir+"/")
	}
	if !inDir(tokenPath) && !inDir(statusPath) {
		return nil
	}
	u, err := systemd.LookupServiceUser(userName)
	if err != nil {
		log.Info("running as root: the files written in " + dir + " belong to root until `orbit email-oauth2-proxy start` hands them to the service user " + userName + " (it does not exist yet)")
		return nil
	}
	return &stateHandover{dir: dir, user: u, log: log}
}

// run hands the directory over; problems are logged, never fatal: the
// proxy in front of the administrator matters more than the unit later.
func (h *stateHandover) run(ctx context.Context) {
	if h == nil {
		return
	}
	changed, err := systemd.FixStateDir(context.WithoutCancel(ctx), h.dir, h.user)
	if err != nil {
		h.log.Warn("could not give " + h.dir + " to the service user " + h.user.Name + ": " + err.Error() + "; `orbit email-oauth2-proxy start` tries again")
		return
	}
	if len(changed) > 0 {
		h.log.Info("gave " + h.dir + " to the service user " + h.user.Name + " so that the unit can use these tokens: " + strings.Join(changed, "; "))
	}
}
