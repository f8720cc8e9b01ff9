"""One self-contained HTML page: tables as <table>, images embedded as base64 PNG data URIs.

    page = HtmlPage("ropeshift report: smollm2-135m")
    page.heading("Summary"); page.table(headers, rows); page.image("heatmap.png", "needle")
    Path("report.html").write_text(page.render())
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; margin: 0.4em 0 1.2em; }
p.note { color: #555; font-size: 0.9em; }
p.lead { font-size: 1.1em; font-weight: 600; }
table.text td { text-align: left; }
"""


class HtmlPage:
    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def para(self, text: str) -> None:
        """A prominent paragraph (the headline sentence)."""
        self.parts.append(f'<p class="lead">{html.escape(text)}</p>')

    def table(self, headers: list[str], rows: list[list[str]], text: bool = False) -> None:
        """A table; ``text=True`` left-aligns every cell (prose values rather than numbers)."""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        cls = ' class="text"' if text else ""
        self.parts.append(f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def image(self, path: Path, alt: str) -> None:
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        self.parts.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')

    def render(self) -> str:
        return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head>\n<body>\n"
                + "\n".join(self.parts) + "\n</body></html>\n")
