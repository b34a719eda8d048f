"""Bad input is one line: a `UserError` raised anywhere under a script's `main`, printed by
`run_cli(main)` as `error: ...` with exit status 2, never a traceback. Ctrl-C is one line too
("interrupted; run the same command to resume", status 130): every write is atomic (infra/disk.py),
so an interrupted script leaves no half-written file and the same command resumes. Under torchrun
every rank meets the same bad input, and rank 0 alone says it. Output piped into a reader that
stops early (`| head`) ends the script quietly."""
import os
import sys

INTERRUPTED = "interrupted; run the same command to resume"


class UserError(Exception):
    """Bad input: the CLI prints the message on one line and exits with status 2."""


def run_cli(main):
    """Run `main()`; a UserError becomes one line on stderr and exit status 2, Ctrl-C one line and
    status 130, not a traceback."""
    try:
        main()
    except UserError as e:
        say(f"error: {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        say(INTERRUPTED)
        sys.exit(130)
    except BrokenPipeError:
        # The reader of stdout has gone: nothing more can be shown. Point stdout at /dev/null so
        # that Python's own flush at exit does not raise again, and stop (the docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def say(line):
    """`line` on stderr, the progress bars' lines ended first; under torchrun by rank 0 alone (every
    rank meets the same input and the same Ctrl-C). torchrun then lists the failed ranks with their exit
    status (its ChildFailedError): a launcher's own output, which no child can silence."""
    if int(os.environ.get("RANK", 0)) > 0:
        return
    from tqdm import tqdm
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
    print(line, file=sys.stderr)
