// Package output is the --output flag (text for people, json for scripts)
// and the JSON encoding every command uses, so that all of orbit's JSON
// looks alike: indented, stable key order, a trailing newline.
package output

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Format is an --output value.
type Format string

const (
	Text Format = "text"
	JSON Format = "json"
)

// Formats lists the accepted values, for help and shell completion.
var Formats = []string{string(Text), string(JSON)}

func (f *Format) String() string { return string(*f) }
func (f *Format) Type() string   { return "format" }

// Set accepts text or json; anything else is a usage error naming both.
func (f *Format) Set(s string) error {
	switch v := Format(strings.ToLower(strings.TrimSpace(s))); v {
	case Text, JSON:
		*f = v
		return nil
	}
	return fmt.Errorf("%q is not an output format: use one of %s", s, strings.Join(Formats, ", "))
}

// AddFlag adds -o/--output to cmd with value completion.
func AddFlag(cmd *cobra.Command, f *Format) {
	if *f == "" {
		*f = Text
	}
	cmd.Flags().VarP(f, "output", "o", "output format: text or json")
	_ = cmd.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return Formats, cobra.ShellCompDirectiveNoFileComp
	})
}

// WriteJSON writes v as indented JSON with a trailing newline.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
