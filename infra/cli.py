"""Bad input is one line: a `UserError` raised anywhere under a script's `main`, printed by
`run_cli(main)` as `error: ...` with exit status 2, never a traceback. Output piped into a reader
that stops early (`| head`) ends the script quietly."""
import os
import sys


class UserError(Exception):
    """Bad input: the CLI prints the message on one line and exits with status 2."""


def run_cli(main):
    """Run `main()`; a UserError becomes one line on stderr and exit status 2, not a traceback."""
    try:
        main()
    except UserError as e:
        from tqdm import tqdm
        for bar in list(getattr(tqdm, "_instances", ())):   # end the progress bars' lines first
            bar.close()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:
        # The reader of stdout has gone: nothing more can be shown. Point stdout at /dev/null so
        # that Python's own flush at exit does not raise again, and stop (the docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
