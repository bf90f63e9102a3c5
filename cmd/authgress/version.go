package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// cmdVersion prints the version. It takes --config like every command (and
// ignores it), so that a wrapper adding --config to each call works.
func cmdVersion(args []string, stdout, stderr io.Writer) int {
	if _, code, ok := flags("version", "Print the version of authgress and of the libraries it is built with. --config is accepted and ignored.", args, stdout, stderr); !ok {
		return code
	}
	fmt.Fprintf(stdout, "authgress %s (%s)\n", version, runtime.Version())
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			fmt.Fprintf(stdout, "  %s %s\n", d.Path, d.Version)
		}
	}
	return exitOK
}
