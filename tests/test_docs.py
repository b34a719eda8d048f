"""The documentation: README.md's Table 1 is the shapes report's ReDPO rows (scripts/readme_table.py
copies it), and every relative link in README.md and docs/ reaches a file and, with a #fragment, a
heading of that file."""
import glob
import os
import re

import pytest

from infra.cli import UserError
from scripts import readme_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def test_the_readme_table_is_the_reports():
    expected = readme_table.method_table(read("docs/shapes/report.md"))
    readme = read("README.md").split("\n")
    inside = readme[readme.index(readme_table.BEGIN) + 1:readme.index(readme_table.END)]
    assert len(expected) == 9 and inside == expected, "run python scripts/readme_table.py"
    assert readme.index(readme_table.END) < 50, "Table 1 is on README's first screen"


def test_the_table_replaces_only_the_lines_between_the_markers():
    readme = f"# Title\ntext\n{readme_table.BEGIN}\n| old |\n{readme_table.END}\nafter\n"
    report = ("# V.I.P. results\n\n### DPO (toy)\n\n| d |\n\n### ReDPO (toy, 2 seeds: 0, 1)\n\n"
              "| a | b |\n|---|---|\n| x | y |\n\nPaired differences\n\n| c |\n")
    table = readme_table.method_table(report)
    assert table == ["| a | b |", "|---|---|", "| x | y |"]
    assert readme_table.with_table(readme, table) == (
        f"# Title\ntext\n{readme_table.BEGIN}\n| a | b |\n|---|---|\n| x | y |\n{readme_table.END}\nafter\n")
    with pytest.raises(UserError):
        readme_table.with_table("# no markers\n", table)
    with pytest.raises(UserError):
        readme_table.method_table("# V.I.P. results\n\n## Cost\n")


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
