package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // the command failed: etcd unreachable, instance not found, ...
	exitInput   = 2 // invalid command line or input
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, let a second one end the process at once.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status. Commands that
// hold (dev, watch, register) end when ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "roster: %s\n", oneLine(err.Error()))
	var uerr usageError
	var ierr inputError
	switch {
	case errors.As(err, &uerr) || strings.HasPrefix(err.Error(), "unknown command "):
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "\n%s", cmd.UsageString())
		return exitInput
	case errors.As(err, &ierr):
		return exitInput
	default:
		return exitFailure
	}
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// usageError is a command line that cannot be parsed: an unknown flag or
// command, a flag value of the wrong type, or the wrong number of
// arguments. run prints the command's usage after it.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// inputError is a well-formed command line with an invalid value: a bad
// address, a missing required flag, a bad environment variable.
type inputError struct{ err error }

func (e inputError) Error() string { return e.err.Error() }
func (e inputError) Unwrap() error { return e.err }

func inputErrorf(format string, args ...any) error {
	return inputError{fmt.Errorf(format, args...)}
}

// noArgs is the argument validator of commands that take none.
func noArgs(cmd *cobra.Command, a []string) error {
	if len(a) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments; got %q", cmd.CommandPath(), a)}
	}
	return nil
}

// serviceArg is the argument validator of commands that take one service,
// optional or not.
func serviceArg(optional bool) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		switch {
		case len(a) == 0 && !optional:
			return usageError{errors.New("missing service argument")}
		case len(a) > 1:
			return usageError{fmt.Errorf("%s takes one service; got %q", cmd.CommandPath(), a)}
		}
		return nil
	}
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "roster",
		Short: "See and poke a roster service registry",
		Long: `roster is the command line of the roster service-discovery framework.

It runs a development registry (roster dev: etcd, or NATS with --backend
nats), lists and watches the instances registered (roster ls, roster watch),
registers or removes instances by hand (roster register, roster
deregister), and serves a live web view of the registry (roster ui).

--backend (ROSTER_BACKEND) selects the registry: etcd (the default) or nats.
Connection flags can also be set by environment variables: ROSTER_ENDPOINTS,
ROSTER_CACERT, ROSTER_CERT, ROSTER_KEY, ROSTER_USERNAME, ROSTER_PASSWORD,
ROSTER_TIMEOUT, register's --ttl by ROSTER_TTL; etcd's --prefix by
ROSTER_PREFIX; NATS's --bucket, --creds and --nkey-seed by ROSTER_BUCKET,
ROSTER_CREDENTIALS and ROSTER_NKEY_SEED, and its token by ROSTER_TOKEN only.
A flag on the command line wins.`,
		Example: `  roster dev &
  export ROSTER_ENDPOINTS=127.0.0.1:2379
  roster register --service payments --id p-1 --address 127.0.0.1:8080 --meta zone=a &
  roster ls
  roster ls payments -o json
  roster watch payments`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.CompletionOptions.HiddenDefaultCmd = true
	addConnectionFlags(root.PersistentFlags())

	a := &app{stdout: stdout, stderr: stderr}
	root.AddCommand(
		a.devCmd(),
		a.lsCmd(),
		a.watchCmd(),
		a.registerCmd(),
		a.deregisterCmd(),
		a.maintCmd(),
		a.benchCmd(),
		a.uiCmd(),
	)
	return root
}

// app holds what every command writes to.
type app struct {
	stdout, stderr io.Writer
}

// warnf prints a warning line on stderr.
func (a *app) warnf(format string, args ...any) {
	fmt.Fprintf(a.stderr, "roster: warning: "+format+"\n", args...)
}
