// Package secretflag marks the flags whose value is a secret, in one place
// (a pflag annotation on the flag itself), so that code which handles
// command lines generically can keep those values out of process lists:
// --host sends them over the SSH session's standard input instead of the
// remote command line, and a local run warns that ps and shell history
// show them.
package secretflag

import (
	"fmt"

	"github.com/spf13/pflag"
)

// Annotation is the pflag annotation key; its one value names the flag
// that reads the same secret from a file ("-" for standard input).
const Annotation = "orbit_secret_file_flag"

// Mark declares flag name of fs a secret whose value can also be read from
// the file named by fileFlag (which must accept "-" for standard input).
// Both flags must exist: a typo is a programming error, so it panics.
func Mark(fs *pflag.FlagSet, name, fileFlag string) {
	if fs.Lookup(fileFlag) == nil {
		panic(fmt.Sprintf("secretflag: --%s names --%s, which does not exist", name, fileFlag))
	}
	if err := fs.SetAnnotation(name, Annotation, []string{fileFlag}); err != nil {
		panic(fmt.Sprintf("secretflag: %v", err))
	}
}

// FileFlag returns the file flag of a secret flag, and whether f is one.
func FileFlag(f *pflag.Flag) (string, bool) {
	if f == nil {
		return "", false
	}
	v := f.Annotations[Annotation]
	if len(v) != 1 {
		return "", false
	}
	return v[0], true
}
