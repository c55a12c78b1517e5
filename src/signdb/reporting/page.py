"""The reports' HTML: one self-contained page, every image inline, no network, no sibling files.

Each figure or table sits in a ``<section class="panel" id="fig-...">`` under
a thin grey rule; the browser tests find them by id.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from signdb.reporting.figures import SPLIT, fmt

_CSS = """
body { font-family: sans-serif; margin: 16px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 0 0 6px; }
.grid { display: grid; grid-template-columns: 620px 620px; gap: 12px; }
.wide { grid-column: 1 / span 2; }
.gallery { display: flex; flex-wrap: wrap; gap: 6px; }
.gallery figure { margin: 0; width: 96px; font-size: 10px; overflow-wrap: anywhere; }
.gallery img { width: 96px; height: 96px; image-rendering: pixelated; display: block; }
table { border-collapse: collapse; font-size: 12px; margin-top: 12px; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
.caption { font-size: 12px; color: #555; }
.panel { border: 1px solid #ddd; border-radius: 2px; padding: 6px 8px; background: #fff; }
.panel h2 { font-weight: 600; color: #333; }
table.data td.num, table.data th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.data th { background: #f6f6f6; }
"""


def panel(key: str, title: str, body: str, *, wide: bool = False) -> str:
    """A figure or table under a title, in a thin grey rule (``id="fig-<key>"``)."""
    classes = "panel wide" if wide else "panel"
    return (
        f'<section class="{classes}" id="fig-{key}"><h2>{html.escape(title)}</h2>{body}</section>'
    )


def table(head: list[str], rows: list[list[str]], *, numeric_from: int = 0) -> str:
    """An HTML table; columns from ``numeric_from`` on are right-aligned numbers."""

    def cells(values: list[str], tag: str) -> str:
        return "".join(
            f'<{tag} class="{"num" if i >= numeric_from else ""}">{html.escape(v)}</{tag}>'
            for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    return f'<table class="data"><tr>{cells(head, "th")}</tr>{body}</table>'


def img(src: str, alt: str, width: int = 600, height: int = 450) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}" width="{width}" height="{height}">'


def gallery(tiles: list[dict[str, Any]], total_wrong: int) -> str:
    """The misclassified images: ``tiles`` carry a thumbnail ``src`` and their prediction."""
    if not tiles:
        return panel("gallery", "Misclassified test images", "<p>None.</p>", wide=True)
    figures = "".join(
        f'<figure><img src="{t["src"]}" alt="image {t["image_id"]}"><figcaption>true '
        f"{t['label']} &rarr; {t['predicted']} (p={t['probability']:.2f})<br>"
        f"{html.escape(Path(t['source']).name)}</figcaption></figure>"
        for t in tiles
    )
    body = (
        f'<p class="caption">{len(tiles)} of {total_wrong} misclassified {SPLIT} images, '
        f'most confident first.</p><div class="gallery">{figures}</div>'
    )
    return panel("gallery", "Misclassified test images", body, wide=True)


def page(
    title: str,
    caption: str,
    figures: list[str],
    facts: dict[str, Any],
    facts_title: str = "Run and hyperparameters",
) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(fmt(v))}</td></tr>"
        for k, v in facts.items()
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="caption">{caption}</p>'
        f'<div class="grid">{"".join(figures)}</div>'
        f"<h2>{html.escape(facts_title)}</h2><table>{rows}</table></body></html>\n"
    )


def write_page(out_dir: str | Path, text: str) -> Path:
    from signdb.errors import InvalidArgument

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "index.html"
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise InvalidArgument(
            f"cannot write the report into {out}: {e.strerror}; choose another --out folder"
        ) from None
    return path.resolve()
