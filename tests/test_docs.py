"""The README's architecture tree and the links between README.md and docs/ stay true: every path
the tree names exists, every top-level directory, every directory one level down and every core
module is in it, and every relative link (with its #anchor) resolves."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def tree() -> list[str]:
    """The paths the README's architecture block names, nested entries joined to their parent."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"^## Architecture\n\n```\n(.*?)^```", text, re.M | re.S)
    assert block, "README lacks its architecture tree"
    paths, parent = [], ""
    for line in block.group(1).splitlines():
        if not line.strip() or line.startswith(" " * 20):
            continue  # a continuation of the description column
        indent = len(line) - len(line.lstrip())
        names = re.split(r",\s*", line.strip().split("  ")[0])
        if indent == 0:
            parent = names[0] if names[0].endswith("/") else ""
            paths += names
        else:
            paths += [parent + name for name in names]
    return paths


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    return out.splitlines()


def test_every_path_in_the_tree_exists() -> None:
    missing = [p for p in tree() if not (REPO / p).exists()]
    assert not missing, f"the README's tree names paths that do not exist: {missing}"


def test_the_tree_lists_every_top_level_directory_and_core_module() -> None:
    named = set(tree())
    files = tracked()
    tops = {f.split("/")[0] + "/" for f in files if "/" in f and not f.startswith(".")}
    covered = {n.split("/")[0] + "/" for n in named}
    assert tops <= covered, f"top-level directories missing from the tree: {sorted(tops - covered)}"
    core = {f for f in files if re.fullmatch(r"toolchain/[^/]+\.(py|c)", f)
            and not f.endswith("__init__.py")}
    core |= {"/".join(f.split("/")[:2]) + "/" for f in files
             if f.startswith("toolchain/") and f.count("/") >= 2
             and not f.startswith("toolchain/gates/")}
    core |= {"/".join(f.split("/")[:3]) for f in files
             if f.startswith("toolchain/gates/") and f.count("/") == 2 and f.endswith(".py")
             and not f.endswith("__init__.py")}
    core |= {"/".join(f.split("/")[:3]) + "/" for f in files
             if f.startswith("toolchain/gates/") and f.count("/") >= 3}
    assert core <= named, f"core modules missing from the README's tree: {sorted(core - named)}"


def test_the_tree_lists_every_directory_one_level_down() -> None:
    """Outside the core (checked module by module above), every directory directly inside a
    top-level one is in the tree as a path of its own (clients/python/ stands for its package):
    a new package or manifest directory cannot go unmentioned."""
    named = set(tree())
    second = {"/".join(f.split("/")[:2]) + "/" for f in tracked()
              if f.count("/") >= 2 and not f.startswith((".", "toolchain/"))}
    missing = sorted(d for d in second if d not in named)
    assert not missing, f"directories missing from the README's tree: {missing}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    bad = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        missing_anchor = bool(anchor) and dest.suffix == ".md" and anchor not in anchors(dest)
        if not dest.exists() or missing_anchor:
            bad.append(target)
    assert not bad, f"{page.name}: broken links {bad}"
