"""Every relative link in README.md and docs/ points at a file that exists (and at a heading that exists);
mkdocs.yml lists every page under docs/ and nothing else."""

from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def _pages() -> list[str]:
    pages = [os.path.join(ROOT, "README.md")]
    for d, _, files in os.walk(os.path.join(ROOT, "docs")):
        pages += [os.path.join(d, f) for f in files if f.endswith(".md")]
    return sorted(pages)


def _prose(path: str) -> str:
    """The page without fenced code blocks and inline code (links there are examples, not links)."""
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", open(path, encoding="utf-8").read(), flags=re.S | re.M)
    out = set()
    for heading in re.findall(r"^#+\s+(.*?)\s*$", text, flags=re.M):
        out.add(re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", _pages(), ids=lambda p: os.path.relpath(p, ROOT))
def test_links_resolve(page):
    broken = []
    for m in LINK.finditer(_prose(page)):
        target = m.group(1) or m.group(2)
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(dest):
            broken.append(f"{target} (no file {os.path.relpath(dest, ROOT)})")
        elif anchor and dest.endswith(".md") and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {os.path.relpath(dest, ROOT)})")
    assert not broken, f"{os.path.relpath(page, ROOT)}: broken links: {broken}"


def test_mkdocs_nav_lists_every_page():
    nav = set(re.findall(r":\s*([\w./-]+\.md)\s*$", open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8").read(),
                         flags=re.M))
    docs = {os.path.relpath(p, os.path.join(ROOT, "docs")) for p in _pages() if "/docs/" in p}
    assert nav == docs, f"missing from mkdocs.yml: {sorted(docs - nav)}; listed but absent: {sorted(nav - docs)}"
