"""HTML pages of the reports (standard library only) and a check of their links."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

__all__ = ["Section", "broken_links", "figure", "note", "render_page", "table", "write_page"]


@dataclass
class Section:
    """One section of a report: an anchor ``id``, a heading and its HTML body."""

    id: str
    title: str
    body: str


_STYLE = """
body { font-family: sans-serif; margin: 0; color: #222; }
nav { position: sticky; top: 0; background: #2c3e50; padding: 6px 16px; z-index: 1; }
nav a { color: #fff; margin-right: 14px; text-decoration: none; font-size: 14px; }
main { padding: 8px 24px 40px; max-width: 1200px; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 1px solid #ccc; padding-top: 36px; }
figure { margin: 12px 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f4f4f4; } .note { color: #666; font-style: italic; }
.error { color: #a00; font-weight: bold; } .refs { font-size: 13px; }
"""

#: Sets data-figures on <body> once the page has loaded: "ok" when every image decoded
#: (naturalWidth > 0), else "broken"; data-figures-count holds "<decoded>/<total>".
_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var decoded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.dataset.figuresCount = decoded.length + "/" + images.length;
  document.body.dataset.figures = decoded.length === images.length ? "ok" : "broken";
});
"""


def figure(path: str | Path, page_dir: str | Path, caption: str) -> str:
    """An ``<img>`` of ``path`` with a link relative to the page's folder, and a caption."""
    relative = Path(os.path.relpath(path, page_dir)).as_posix()
    src = html.escape(relative, quote=True)
    return (f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(caption, quote=True)}">'
            f"</a><figcaption>{html.escape(caption)}</figcaption></figure>")


def table(frame: pd.DataFrame, *, index: bool = False, digits: int = 3) -> str:
    """An HTML table of ``frame`` (numbers rounded to ``digits``)."""
    rounded = frame.copy()
    for column in rounded.columns:
        if pd.api.types.is_float_dtype(rounded[column]):
            rounded[column] = rounded[column].round(digits)
    return rounded.to_html(index=index, border=0, na_rep="n/a", escape=True)


def note(text: str, css: str = "note") -> str:
    """A paragraph in the ``note`` (or ``error``) style."""
    return f'<p class="{css}">{html.escape(text)}</p>'


def render_page(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole page: title, a navigation bar to the sections, the sections."""
    nav = "".join(f'<a href="#{html.escape(s.id)}">{html.escape(s.title)}</a>'
                  for s in sections)
    body = "\n".join(f'<section id="{html.escape(s.id)}"><h2>{html.escape(s.title)}</h2>\n'
                     f"{s.body}\n</section>" for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n"
            f"<script>{_SCRIPT}</script>\n</head>\n<body>\n<nav>{nav}</nav>\n<main>\n"
            f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(subtitle)}</p>\n{body}\n"
            "</main>\n</body>\n</html>\n")


def write_page(path: str | Path, title: str, subtitle: str, sections: list[Section]) -> Path:
    """Render the page and write it atomically to ``path``.

    The page is written even when unchanged: its modification time is when it was drawn,
    which :func:`workflows.reports.stale_participants` compares with the derivatives'.
    """
    from workflows.bids.atomic import atomic_write

    with atomic_write(path, keep_identical=False) as handle:
        handle.write(render_page(title, subtitle, sections))
    return Path(path)


class _Links(HTMLParser):
    _ATTRIBUTES = {"img": "src", "a": "href", "object": "data", "link": "href",
                   "script": "src", "iframe": "src", "source": "src"}

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        target = attrs.get(self._ATTRIBUTES.get(tag, ""))
        if target:
            self.targets.append(target)


def broken_links(page: str | Path) -> list[str]:
    """The link targets of an HTML page that do not exist (files, or ``#anchors`` on the page).

    External links (``http:``, ``https:``, ``mailto:``) count as broken: reports are
    self-contained.
    """
    page = Path(page)
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    broken = []
    for target in parser.targets:
        if target.startswith("#"):
            if target[1:] not in parser.ids:
                broken.append(target)
        elif ":" in target.split("/")[0] or not (page.parent / target.split("#")[0]).is_file():
            broken.append(target)
    return broken
