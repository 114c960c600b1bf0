// Command trainer fits models: `trainer run` is the training daemon,
// `trainer models` operates the registry, and the offline subcommands fit
// files:
//
//	trainer schema --input FILE                  print the inferred schema (JSON) to edit
//	trainer fit --input FILE --out model.bin     fit a model bundle (schema inferred unless --schema;
//	                                             signed with --signing-key KEY.pem)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/fraudstream/fraudstream/pkg/offline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: trainer <command> [flags]

commands:
  run      the training daemon: every --every, the leader among replicas fits a model on the
           recent --window of the transactions topic and publishes it to the Redis registry
  models   list | rollback | pin | unpin | publish | schema: operate the model registry
           ('trainer models -h')
  schema   print the schema inferred from --input, as JSON to edit and pass back with --schema
  fit      fit a model bundle on --input and write it to --out

run 'trainer <command> -h' for a command's flags`

// errUsage: the usage or a flag error has been printed; exit 2.
var errUsage = errors.New("usage")

// parseFlags parses args; a bad flag (already reported by the flag
// package, with the command's flags) is errUsage, -h is flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return errUsage
	}
	if err == nil && fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected arguments %q (flags come as --name value)\n", fs.Name(), fs.Args())
		return errUsage
	}
	return err
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("trainer "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var err error
	switch args[0] {
	case "run":
		err = daemon(ctx, args[1:], stderr)
	case "models":
		err = models(ctx, args[1:], stdout, stderr)
	case "schema":
		var c offline.SchemaConfig
		fs.StringVar(&c.Input, "input", "", "records (CSV or JSON Lines; - for standard input)")
		fs.StringVar(&c.Ignore, "ignore", "", "comma-separated fields to leave out")
		if err = parseFlags(fs, args[1:]); err == nil {
			err = offline.InferSchemaFile(ctx, c, stdin, stdout, stderr)
		}
	case "fit":
		var c offline.FitConfig
		fs.StringVar(&c.Input, "input", "", "training records (CSV or JSON Lines; - for standard input)")
		fs.StringVar(&c.Out, "out", "model.bin", "model bundle to write")
		fs.StringVar(&c.Schema, "schema", "", "schema file (JSON from 'trainer schema'); inferred when empty")
		fs.StringVar(&c.Ignore, "ignore", "", "comma-separated fields to leave out of an inferred schema")
		fs.IntVar(&c.MaxLevels, "max-levels", 50, "largest categorical vocabulary (most frequent levels)")
		offline.SigningKeyFlag(fs, &c.SigningKey, "the bundle written to --out")
		offline.HistoryFlag(fs, &c.History, "never trained on")
		offline.AEFlags(fs, &c.AE)
		if err = parseFlags(fs, args[1:]); err == nil {
			_, err = offline.FitFile(ctx, c, stdin, stderr)
		}
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "trainer: unknown command %q\n%s\n", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "trainer %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
