"""`charlm corpus list|get`: the well-known corpora of charlm.registry, from the command line."""
from __future__ import annotations

import json
import sys

import click

from charlm.registry import get, listing


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def corpus_group():
    """Well-known corpora: list them, fetch them into the cache with checksums verified."""


@corpus_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def list_command(as_json):
    """One line per corpus: name, level, files, total size, license, cache state."""
    rows = listing()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for r in rows:
        if not r["total_size_complete"]:
            size = f">={_human(r['total_size'])}" if r["total_size"] else "size unknown"
        else:
            size = _human(r["total_size"])
        state = ("cached" if r["cached"] else
                 f"partly cached ({len(r['cached_files'])}/{len(r['files'])})" if r["cached_files"] else
                 "not cached")
        if not r["verified"]:
            state += ", checksums partly unverified" if any(
                f.get("sha256") for f in r["files"].values()) else ", checksums unverified"
        click.echo(f"{r['name']:<16} {r['level']:<5} {','.join(r['files']):<42} {size:>10}  "
                   f"{r['license']}  [{state}]")


@corpus_group.command("get")
@click.argument("name")
@click.option("--from", "source", metavar="DIR_OR_URL", default=None,
              help="Copy the files from this local folder, or download them from this base URL (a mirror), "
                   "instead of the canonical URLs.")
@click.option("--dest", type=click.Path(file_okay=False), default=None,
              help="Put the files here instead of the cache (CACHE/corpora/NAME).")
def get_command(name, source, dest):
    """Fetch every file of corpus NAME, verify its checksum, unpack archives, and print the folder holding
    them."""
    folder = get(name, source=source, dest=dest, progress=sys.stderr.isatty())
    click.echo(str(folder))
