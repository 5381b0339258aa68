package root

import (
	"fmt"

	"github.com/senhasegura/orbit/internal/buildinfo"
	"github.com/senhasegura/orbit/internal/cli/factory"
	"github.com/senhasegura/orbit/internal/output"
	"github.com/spf13/cobra"
)

func newVersionCmd(f *factory.Factory) *cobra.Command {
	var format output.Format
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print orbit's version, commit, build date and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			i := buildinfo.Get()
			if format == output.JSON {
				return output.WriteJSON(f.IO.Out, i)
			}
			_, err := fmt.Fprintf(f.IO.Out, "orbit %s\ncommit:  %s\nbuilt:   %s\ngo:      %s (%s)\n", i.Version, i.Commit, i.Date, i.GoVersion, i.Platform)
			return err
		},
	}
	output.AddFlag(cmd, &format)
	return cmd
}
