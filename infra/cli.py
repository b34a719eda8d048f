"""Bad input is one line: a `UserError` raised anywhere under a script's `main`, printed by
`run_cli(main)` as `error: ...` with exit status 2, never a traceback."""
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


# ---------------------------------------------------------------------------------------------
