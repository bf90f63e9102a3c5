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
  authgress token CREDENTIAL [--show]  fetch one token and print its type, scopes and expiry
  authgress test CONNECTION [PATH]    send one real request through the whole pipeline
  authgress ca init --cert F --key F  write a new interception CA for [intercept]
  authgress version                   print the version (also: authgress --version)

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
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		return cmdVersion(args[1:], stdout, stderr)
	}
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return cmdRun(args, stdout, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "token":
		return cmdToken(args, stdout, stderr)
	case "test":
		return cmdTest(args, stdout, stderr)
	case "ca":
		return cmdCA(args, stdout, stderr)
	case "version":
		return cmdVersion(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "authgress: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// command is a subcommand's flag set: --config and --help on every one.
type command struct {
	fs     *flag.FlagSet
	config *string
	stdout io.Writer
}

func newCommand(name, synopsis, summary string, stdout, stderr io.Writer) *command {
	fs := flag.NewFlagSet("authgress "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &command{fs: fs, config: fs.String("config", "authgress.toml", "path of the TOML config file"), stdout: stdout}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: authgress %s\n\n%s\n\nFlags:\n", synopsis, summary)
		fs.PrintDefaults()
	}
	return c
}

// parse parses flags placed before or after positional arguments and
// returns the positional ones; ok is false when the caller must exit with
// code (help printed, or a usage error).
func (c *command) parse(args []string, minPos, maxPos int) (pos []string, code int, ok bool) {
	for {
		if err := c.fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				c.fs.SetOutput(c.stdout)
				c.fs.Usage()
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		if c.fs.NArg() == 0 {
			break
		}
		pos = append(pos, c.fs.Arg(0))
		args = c.fs.Args()[1:]
	}
	if len(pos) < minPos || len(pos) > maxPos {
		fmt.Fprintf(c.fs.Output(), "authgress: wrong number of arguments\n")
		c.fs.Usage()
		return nil, exitUsage, false
	}
	return pos, 0, true
}

// flags parses a subcommand that takes only flags.
func flags(name, summary string, args []string, stdout, stderr io.Writer) (config string, code int, ok bool) {
	c := newCommand(name, name+" [--config FILE]", summary, stdout, stderr)
	if _, code, ok := c.parse(args, 0, 0); !ok {
		return "", code, false
	}
	return *c.config, 0, true
}
