"""The documentation: generated tables match their JSON, the README is an entry point, the site builds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_tables_and_the_readme_headline_are_what_make_tables_writes():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tables.py"), "--check"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_tables_check_notices_a_hand_edited_number(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import tables
    finally:
        sys.path.pop(0)
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text(encoding="utf-8").replace("| 0.7303 |", "| 0.7403 |"), encoding="utf-8")
    monkeypatch.setattr(tables, "README", readme)
    assert tables.main(["--check"]) == 1


def test_the_readme_is_an_entry_point_whose_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not urlsplit(target).scheme:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


@pytest.mark.slow
def test_the_site_builds_strict_and_every_internal_link_resolves(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
                          capture_output=True, text=True, check=False, cwd=ROOT, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    broken = []
    for page in site.rglob("*.html"):
        if page.name == "404.html":  # site-absolute links, served from the root
            continue
        for href in re.findall(r'(?:href|src)="([^"]+)"', page.read_text(encoding="utf-8")):
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("#", "mailto:", "data:")) or not parts.path:
                continue
            target = (page.parent / parts.path).resolve()
            if not (target.is_file() or (target / "index.html").is_file()):
                broken.append(f"{page.relative_to(site)} -> {href}")
    assert not broken, broken[:20]
