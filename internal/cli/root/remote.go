package root

import (
	"fmt"
	"slices"
	"strings"

	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/exitcode"
	"github.com/senhasegura/orbit/internal/remote"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// HostsEnv lists hosts for a fleet run when neither --host nor
// --hosts-file (nor ORBIT_HOST) is given.
const HostsEnv = "ORBIT_HOSTS"

// remoteFlags are the connection flags every command has.
type remoteFlags struct {
	opts      remote.Options
	hosts     []string
	hostsFile string
}

// localFlags are consumed here and never forwarded: the remote orbit
// would otherwise try to connect onwards, or read a file of this machine.
var localFlags = []string{"host", "hosts-file", "parallel", "ssh-user", "ssh-port", "ssh-identity",
	"ssh-known-hosts", "ssh-config", "ssh-timeout", "ssh-sudo", "remote-orbit", "settings"}

func addRemoteFlags(fs *pflag.FlagSet, r *remoteFlags) {
	o := &r.opts
	fs.StringArrayVar(&r.hosts, "host", nil, "run the command over SSH on `[USER@]HOST[:PORT]` (or ssh://..., or an ~/.ssh/config alias) instead of here; repeat for several hosts (docs/remote.md)")
	fs.StringVar(&r.hostsFile, "hosts-file", "", "run the command on every host listed in `FILE` (one address per line, # comments), in parallel")
	fs.IntVar(&o.Parallel, "parallel", remote.DefaultParallel, "with several hosts: run on at most `N` at once")
	fs.StringVar(&o.User, "ssh-user", remote.DefaultUser, "with --host: the SSH login `USER` (wins over USER@ and ~/.ssh/config)")
	fs.IntVar(&o.Port, "ssh-port", remote.DefaultPort, "with --host: the SSH `PORT` (wins over :PORT and ~/.ssh/config)")
	fs.StringArrayVar(&o.Identities, "ssh-identity", nil, "with --host: a private key `FILE`, repeatable (default: ssh-agent, then IdentityFile of ~/.ssh/config, or ~/.ssh/id_ed25519, id_ecdsa, id_rsa)")
	fs.StringVar(&o.KnownHosts, "ssh-known-hosts", remote.DefaultKnownHosts, "with --host: the known_hosts `FILE` that must hold the host's key (wins over UserKnownHostsFile of ~/.ssh/config)")
	fs.StringVar(&o.SSHConfig, "ssh-config", remote.DefaultSSHConfig, "with --host: the ssh_config `FILE` to read (none: no file); the default also reads "+remote.SystemSSHConfig)
	fs.DurationVar(&o.Timeout, "ssh-timeout", remote.DefaultTimeout, "with --host: give up on a host that does not answer within `DURATION`")
	fs.StringVar(&o.Sudo, "ssh-sudo", remote.DefaultSudo, "with --host: when to run the remote command through sudo -n, `MODE` auto (the login user is not root), always or never")
	fs.StringVar(&o.RemoteOrbit, "remote-orbit", remote.DefaultRemoteOrbit, "with --host: the orbit `PROGRAM` on the remote host (a name on its PATH, or a full path)")
}

// registerRemoteCompletion offers the --ssh-sudo values.
func registerRemoteCompletion(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("ssh-sudo", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return remote.SudoModes, cobra.ShellCompDirectiveNoFileComp
	})
	_ = cmd.MarkPersistentFlagFilename("hosts-file")
	_ = cmd.MarkPersistentFlagFilename("ssh-identity")
	_ = cmd.MarkPersistentFlagFilename("ssh-known-hosts")
	_ = cmd.MarkPersistentFlagFilename("ssh-config")
}

// runRemote, when hosts are named (--host, --hosts-file, ORBIT_HOST,
// ORBIT_HOSTS or the settings file), runs the command on them instead of
// here and stops the local run with a silent exit status carrying the
// remote outcome. Help and shell completion stay local, so they answer at
// once and need no connection.
func runRemote(c *cobra.Command, f *factory.Factory, st *rootState) error {
	switch c.Name() {
	case "help", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
		return nil
	}
	r := &st.remote
	fs := c.Flags()
	hosts := slices.Clone(r.hosts)
	fleet := len(hosts) > 1
	if r.hostsFile != "" {
		more, err := remote.ReadHostsFile(r.hostsFile)
		if err != nil {
			return err
		}
		hosts, fleet = append(hosts, more...), true
	}
	if len(hosts) == 0 {
		if env := remote.SplitHostList(f.Getenv(HostsEnv)); len(env) > 0 {
			hosts, fleet = env, true
		}
	}
	if len(hosts) == 0 {
		warnLocalSecrets(f, st.argv, fs, st.familyOf(c))
		return nil
	}
	if st.argv == nil {
		return exitcode.Withf(exitcode.Usage, "--host is only available from orbit's command line")
	}

	o := r.opts
	// Not given: the address, ~/.ssh/config or the default decides.
	if !fs.Changed("ssh-user") {
		o.User = ""
	}
	if !fs.Changed("ssh-port") {
		o.Port = 0
	}
	if !fs.Changed("ssh-known-hosts") {
		o.KnownHosts = ""
	}
	if !fs.Changed("ssh-config") {
		o.SSHConfig = ""
	}
	o.Getenv = f.Getenv

	args := remote.Args(st.argv, localFlags, fs)
	args, secrets := remote.LiftSecrets(args, fs)
	// A plugin's own arguments go as they are: orbit knows none of its
	// flags, secret or not.
	cmd := remote.Command{Args: append(args, st.tail...)}
	switch {
	case len(secrets) > 1:
		return exitcode.Withf(exitcode.Usage, "--%s and --%s: only one secret can travel over standard input; put the other in a file on the remote host and name it with --%s", secrets[0].Flag, secrets[1].Flag, secrets[1].FileFlag)
	case len(secrets) == 1:
		if strings.ContainsAny(secrets[0].Value, "\r\n") {
			return exitcode.Withf(exitcode.Usage, "--%s: the value holds a line break; a secret is one line", secrets[0].Flag)
		}
		cmd.Secret = secrets[0].Value
	}

	var err error
	if fleet {
		jsonOut := false
		if fl := fs.Lookup("output"); fl != nil && fl.Value.String() == "json" {
			jsonOut = true
			// From ORBIT_OUTPUT or the settings file here: the remote
			// orbit reads its own, so say it on its command line.
			if !hasOutputFlag(cmd.Args) {
				cmd.Args = insertBeforeDashDash(cmd.Args, "--output=json")
			}
		}
		err = remote.RunFleet(c.Context(), o, hosts, cmd, jsonOut, f.IO)
	} else {
		err = remote.Run(c.Context(), o, hosts[0], cmd, f.IO)
	}
	if err != nil {
		return err
	}
	return exitcode.Silent(exitcode.OK)
}

// warnLocalSecrets warns when a secret-bearing flag got its value on the
// command line, where ps and the shell history show it.
func warnLocalSecrets(f *factory.Factory, argv []string, fs *pflag.FlagSet, family string) {
	_, secrets := remote.LiftSecrets(argv, fs)
	for _, s := range secrets {
		fmt.Fprintf(f.IO.ErrOut, "orbit: warning: --%s puts the secret in the process list (ps) and your shell history; use --%s FILE, --%s - < FILE, or $%s\n",
			s.Flag, s.FileFlag, s.FileFlag, EnvName(family, s.Flag))
	}
}

func hasOutputFlag(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--output" || strings.HasPrefix(a, "--output=") || (strings.HasPrefix(a, "-o") && !strings.HasPrefix(a, "--")) {
			return true
		}
	}
	return false
}

func insertBeforeDashDash(args []string, flag string) []string {
	if i := slices.Index(args, "--"); i >= 0 {
		return slices.Insert(slices.Clone(args), i, flag)
	}
	return append(args, flag)
}
