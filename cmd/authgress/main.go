// Command authgress is an auth-injecting egress proxy: apps send outbound HTTP
// through it and it injects OAuth client-credentials tokens obtained with
// secrets read from a vault.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

// Exit codes.
const (
	exitOK      = 0
	exitProblem = 1
	exitUsage   = 2
)

var version = "dev"

const usage = `authgress — an auth-injecting egress proxy

Usage:
  authgress [run] [--config FILE]     run the proxy (the default command)
  authgress check [--config FILE]     validate a config file and report every problem
  authgress version                   print the version

Every command takes --config (default authgress.toml) and --help.
Exit codes: 0 ok, 1 a problem was found, 2 usage error.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h" || args[0] == "-help") {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return cmdRun(args, stdout, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "version":
		return cmdVersion(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "authgress: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// flags parses a subcommand's flags; ok is false when the caller must exit
// with code (help printed, or a usage error).
func flags(name, summary string, args []string, stdout, stderr io.Writer) (config string, code int, ok bool) {
	fs := flag.NewFlagSet("authgress "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&config, "config", "authgress.toml", "path of the TOML config file")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: authgress %s [--config FILE]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fs.SetOutput(stdout)
			fs.Usage()
			return "", exitOK, false
		}
		return "", exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "authgress %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", exitUsage, false
	}
	return config, 0, true
}
