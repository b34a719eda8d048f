"""README.md's claims table, generated: the paper's claims as the shapes-world comparison measured
them (Sec. 4, Tables 1, 3, 4), copied from docs/shapes/report.md so that the front page cannot drift
from the report it summarises.

    python scripts/readme_claims.py            # rewrite README.md's claims table from docs/shapes/report.md
    python scripts/readme_claims.py --check    # exit 1 when README.md's table is not the report's

Run it whenever the report is rewritten (`python toy/compare.py --report_only`, or
`python evaluate.py --report docs/shapes/runs/* --out docs/shapes`). The table is the report's
"## The paper's claims" section, its table lines verbatim; in README.md it sits between the BEGIN
and END marker lines, and nothing else of README.md changes.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import runtime  # noqa: E402
from runtime import UserError  # noqa: E402

HEADING = "## The paper's claims"
BEGIN = "<!-- claims table: generated from docs/shapes/report.md by scripts/readme_claims.py -->"
END = "<!-- end of the claims table -->"


def report_claims(report):
    """The table lines of the report's claims section (markdown text in, list of lines out)."""
    lines = report.split("\n")
    if HEADING not in lines:
        raise UserError(f"the report has no '{HEADING}' section; rewrite it with "
                        "`python evaluate.py --report docs/shapes/runs/* --out docs/shapes`")
    table = []
    for line in lines[lines.index(HEADING) + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append(line)
    if not table:
        raise UserError(f"the report's '{HEADING}' section holds no table")
    return table


def with_claims(readme, table):
    """README text with the lines between BEGIN and END replaced by `table`."""
    lines = readme.split("\n")
    if lines.count(BEGIN) != 1 or lines.count(END) != 1 or lines.index(BEGIN) > lines.index(END):
        raise UserError(f"README.md needs the marker lines, once each and in this order:\n{BEGIN}\n{END}")
    return "\n".join(lines[:lines.index(BEGIN) + 1] + table + lines[lines.index(END):])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", default=os.path.join(ROOT, "docs", "shapes", "report.md"),
                   help="the report to copy from (default: docs/shapes/report.md)")
    p.add_argument("--readme", default=os.path.join(ROOT, "README.md"),
                   help="the file to write into (default: README.md)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when the README's table differs from the report's (default: write)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.readme, args.report = os.path.relpath(args.readme), os.path.relpath(args.report)
    readme = runtime.read_text(args.readme)
    new = with_claims(readme, report_claims(runtime.read_text(args.report)))
    if args.check:
        if new != readme:
            print(f"{args.readme}: the claims table differs from {args.report}; run python scripts/readme_claims.py")
            sys.exit(1)
        print(f"{args.readme}: the claims table is the report's")
        return
    if new == readme:
        print(f"{args.readme}: the claims table is already the report's")
        return
    with runtime.atomic_file(args.readme) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(new)
    print(f"{args.readme}: the claims table rewritten from {args.report}")


if __name__ == "__main__":
    runtime.run_cli(main)
