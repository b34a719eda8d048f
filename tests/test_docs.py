"""The documentation: README.md's claims table is the shapes report's (scripts/readme_claims.py
copies it), and every relative link in README.md and docs/ reaches a file and, with a #fragment, a
heading of that file."""
import glob
import os
import re

import pytest

from infra.cli import UserError
from scripts import readme_claims

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def test_the_readme_results_table_is_its_sources():
    path, heading = readme_claims.source()
    section = read(path).split(heading + "\n")[1].split("\n## ")[0]
    expected = [line for line in section.split("\n") if line.startswith("|")]
    readme = read("README.md").split("\n")
    inside = readme[readme.index(readme_claims.BEGIN) + 1:readme.index(readme_claims.END)]
    assert len(expected) > 2 and inside == expected, "run python scripts/readme_claims.py"


def test_the_claims_table_replaces_only_the_lines_between_the_markers():
    readme = f"# Title\ntext\n{readme_claims.BEGIN}\n| old |\n{readme_claims.END}\nafter\n"
    report = "# V.I.P. results\n\n## The paper's claims\n\n| a | b |\n|---|---|\n| x | y |\n\n## Cost\n\n| c |\n"
    table = readme_claims.report_claims(report)
    assert table == ["| a | b |", "|---|---|", "| x | y |"]
    assert readme_claims.with_claims(readme, table) == (
        f"# Title\ntext\n{readme_claims.BEGIN}\n| a | b |\n|---|---|\n| x | y |\n{readme_claims.END}\nafter\n")
    with pytest.raises(UserError):
        readme_claims.with_claims("# no markers\n", table)
    with pytest.raises(UserError):
        readme_claims.report_claims("# V.I.P. results\n\n## Cost\n")


def anchor(heading):
    """GitHub's id for a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_in_the_docs_resolves():
    pages = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in
                                   glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
    broken = []
    for page in pages:
        for target in LINK.findall(read(page)):
            if re.match(r"[a-z]+:", target):
                continue                                   # http(s), mailto: not checked offline
            path, _, fragment = target.partition("#")
            full = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path else \
                os.path.join(ROOT, page)
            if not os.path.exists(full):
                broken.append(f"{page}: {target}")
            elif fragment and full.endswith(".md"):
                headings = re.findall(r"^#+ (.+)$", open(full, encoding="utf-8").read(), re.M)
                if fragment not in {anchor(h) for h in headings}:
                    broken.append(f"{page}: {target} (no such heading)")
    assert len(pages) > 5 and broken == []
