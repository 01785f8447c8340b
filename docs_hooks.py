"""MkDocs hook (mkdocs.yml ``hooks:``): the repository files the docs link to come into the site.

The pages link to code with relative paths (``../../minilora/ops/linear.py``, ``../CONTRIBUTING.md``) so
the links work where most people read them, on the repository's web view. Those files lie outside
``docs_dir``, which ``mkdocs build --strict`` rejects. This hook copies each linked file into the
site under ``_source/`` (Markdown ones become pages, whose own links are followed the same way) and
rewrites the links to point there, so the same pages also build strictly and link to the exact code.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = os.path.dirname(os.path.abspath(__file__))
SOURCE = "_source"  # where the linked repository files live in the site
LINK = re.compile(r"(\]\()([^)\s#]+)((?:#[^)\s]*)?\))")  # ](target#anchor)
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith(("/", "#"))


def _repo_path(src_uri: str) -> str:
    """A page's path in the repository: docs pages are under docs/, brought-in files under their own path."""
    return src_uri[len(SOURCE) + 1:] if src_uri.startswith(SOURCE + "/") else f"docs/{src_uri}"


def _site_uri(repo_path: str) -> str | None:
    """Where a repository file is in the site (None: not a file of the repository)."""
    if repo_path.startswith("../") or not os.path.isfile(os.path.join(ROOT, repo_path)):
        return None
    return repo_path[len("docs/"):] if repo_path.startswith("docs/") else f"{SOURCE}/{repo_path}"


def _targets(src_uri: str, markdown: str) -> list[tuple[str, str]]:
    """(link target, repository path it names) for every relative link outside code blocks."""
    here = posixpath.dirname(_repo_path(src_uri))
    prose = FENCE.sub("", markdown)
    return [(t, posixpath.normpath(posixpath.join(here, t))) for _, t, _ in LINK.findall(prose) if _is_relative(t)]


def on_files(files: Files, config: Any) -> Files:
    """Add every repository file outside docs/ that a page links to (and, for Markdown, what it links to)."""
    queue = [(f.src_uri, open(f.abs_src_path, encoding="utf-8").read()) for f in files.documentation_pages()]
    added: set[str] = set()
    while queue:
        src_uri, text = queue.pop()
        for _, repo_path in _targets(src_uri, text):
            uri = _site_uri(repo_path)
            if uri is None or not uri.startswith(SOURCE + "/") or uri in added:
                continue
            added.add(uri)
            path = os.path.join(ROOT, repo_path)
            files.append(File.generated(config, uri, abs_src_path=path))
            if uri.endswith(".md"):
                queue.append((uri, open(path, encoding="utf-8").read()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point links to repository files outside docs/ at their copies under _source/ (and back, from those)."""
    src_uri = page.file.src_uri
    here = posixpath.dirname(_repo_path(src_uri))

    def fix(m: re.Match[str]) -> str:
        target = m.group(2)
        if not _is_relative(target):
            return m.group(0)
        uri = _site_uri(posixpath.normpath(posixpath.join(here, target)))
        if uri is None:
            return m.group(0)  # left for mkdocs to report
        new = posixpath.relpath(uri, posixpath.dirname(src_uri) or ".")
        return f"{m.group(1)}{new}{m.group(3)}"

    parts = re.split(r"(^```.*?^```)", markdown, flags=re.S | re.M)  # leave code blocks alone
    return "".join(p if p.startswith("```") else LINK.sub(fix, p) for p in parts)
