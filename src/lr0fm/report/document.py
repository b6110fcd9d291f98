"""A report as a small document tree (sections of paragraphs, tables, figures), and its three renderings:
Markdown, LaTeX, and one self-contained HTML file (inline CSS, figures as data URIs, no script, no links)."""

from __future__ import annotations

import base64
import html
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    align: str = ""  # one letter per column, l or r; default: first column left, others right


@dataclass
class Figure:
    file: str  # PNG name, relative to the report folder
    caption: str


@dataclass
class Details:
    """Content folded away in HTML (<details>, no script needed); shown inline elsewhere."""

    summary: str
    blocks: list = field(default_factory=list)


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section]


def _alignment(table: Table) -> str:
    return table.align or "l" + "r" * (len(table.headers) - 1)


# ---------------------------------------------------------------------------------------------------------------
# Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_blocks(blocks: list, out: list[str]) -> None:
    for block in blocks:
        if isinstance(block, Paragraph):
            out += [block.text, ""]
        elif isinstance(block, Table):
            if block.caption:
                out += [f"*{block.caption}*", ""]
            out.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
            out.append("|" + "|".join(":---" if a == "l" else "---:" for a in _alignment(block)) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Figure):
            out += [f"![{block.caption}]({block.file})", "", f"*{block.caption}*", ""]
        elif isinstance(block, Details):
            out += [f"**{block.summary}**", ""]
            _md_blocks(block.blocks, out)


def to_markdown(document: Document) -> str:
    out = [f"# {document.title}", ""]
    for section in document.sections:
        out += [f"## {section.title}", ""]
        _md_blocks(section.blocks, out)
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------------------------
# LaTeX

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_UNICODE = {"γ": r"$\gamma$", "Γ": r"$\Gamma$", "±": r"$\pm$", "×": r"$\times$", "→": r"$\to$",
                  "≥": r"$\geq$", "≤": r"$\leq$", "–": "--", "—": "---", "ε": r"$\varepsilon$", "α": r"$\alpha$",
                  "·": r"$\cdot$", "…": r"\dots{}", "’": "'", "√": r"$\surd$", "ρ": r"$\rho$", "−": "$-$",
                  "²": r"\textsuperscript{2}"}


def _latex_char(ch: str) -> str:
    if ch in _LATEX_SPECIAL:
        return _LATEX_SPECIAL[ch]
    if ch in _LATEX_UNICODE:
        return _LATEX_UNICODE[ch]
    if ord(ch) <= 0xFF:  # Latin-1: inputenc utf8 with T1 fonts sets it
        return ch
    # Anything else (a class or model name in another script) would stop pdflatex: its ASCII base letters,
    # else its code point.
    ascii_form = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
    return latex_escape(ascii_form) if ascii_form else rf"\texttt{{U+{ord(ch):04X}}}"


def latex_escape(text: str) -> str:
    text = "".join(_latex_char(ch) for ch in str(text))
    # Markdown emphasis and code used in paragraphs.
    text = re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", text)
    text = re.sub(r"`(.+?)`", r"\\texttt{\1}", text)
    return text


def _latex_blocks(blocks: list, out: list[str]) -> None:
    for block in blocks:
        if isinstance(block, Paragraph):
            out += [latex_escape(block.text), ""]
        elif isinstance(block, Table):
            out += [r"\begin{table}[htbp]", r"\centering", r"\footnotesize"]
            if block.caption:
                out.append(rf"\caption{{{latex_escape(block.caption)}}}")
            out += [rf"\begin{{tabular}}{{{_alignment(block)}}}", r"\toprule",
                    " & ".join(latex_escape(h) for h in block.headers) + r" \\", r"\midrule"]
            out += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in block.rows]
            out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
        elif isinstance(block, Figure):
            out += [r"\begin{figure}[htbp]", r"\centering",
                    rf"\includegraphics[width=\linewidth]{{{block.file}}}",
                    rf"\caption{{{latex_escape(block.caption)}}}", r"\end{figure}", ""]
        elif isinstance(block, Details):
            out += [rf"\paragraph{{{latex_escape(block.summary)}}}", ""]
            _latex_blocks(block.blocks, out)


def to_latex(document: Document) -> str:
    """A complete document (booktabs, graphicx); the figures are read from the report folder."""
    out = [r"\documentclass[a4paper]{article}", r"\usepackage[margin=2cm]{geometry}", r"\usepackage{booktabs}",
           r"\usepackage{graphicx}", r"\usepackage[T1]{fontenc}", r"\usepackage[utf8]{inputenc}",
           rf"\title{{{latex_escape(document.title)}}}", r"\date{}", r"\begin{document}", r"\maketitle", ""]
    for section in document.sections:
        out += [rf"\section{{{latex_escape(section.title)}}}", ""]
        _latex_blocks(section.blocks, out)
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1180px;padding:24px;color:#1d2430;line-height:1.45;background:#fff}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.3em;border-bottom:1px solid #dde3ea;padding-bottom:.2em;
margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em}
caption{caption-side:top;text-align:left;font-style:italic;color:#4a5565;padding-bottom:.3em}
th,td{border-bottom:1px solid #e3e8ee;padding:.25em .7em;white-space:nowrap}
th{background:#f3f6f9;font-weight:600}td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}
td.l,th.l{text-align:left}tr:hover td{background:#fafcff}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eef1f4}
figcaption{font-size:.88em;color:#4a5565}
details{margin:.5em 0 1em}summary{cursor:pointer;font-weight:600}
code{background:#f3f6f9;padding:0 .25em;border-radius:3px}
.wide{overflow-x:auto}
"""


def _inline(text: str) -> str:
    text = html.escape(str(text))
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _html_blocks(blocks: list, folder: Path, out: list[str]) -> None:
    for block in blocks:
        if isinstance(block, Paragraph):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            align = _alignment(block)
            out.append('<div class="wide"><table>')
            if block.caption:
                out.append(f"<caption>{_inline(block.caption)}</caption>")
            out.append("<thead><tr>" + "".join(f'<th class="{a}">{html.escape(str(h))}</th>'
                                               for h, a in zip(block.headers, align)) + "</tr></thead><tbody>")
            for row in block.rows:
                out.append("<tr>" + "".join(f'<td class="{a}">{html.escape(str(c))}</td>'
                                            for c, a in zip(row, align)) + "</tr>")
            out.append("</tbody></table></div>")
        elif isinstance(block, Figure):
            data = base64.b64encode((folder / block.file).read_bytes()).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}">'
                       f"<figcaption>{_inline(block.caption)}</figcaption></figure>")
        elif isinstance(block, Details):
            out.append(f"<details><summary>{_inline(block.summary)}</summary>")
            _html_blocks(block.blocks, folder, out)
            out.append("</details>")


def to_html(document: Document, folder: Path) -> str:
    """One file that opens anywhere without a server: `folder` holds the PNGs that get embedded."""
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(document.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           f"<h1>{html.escape(document.title)}</h1>"]
    for section in document.sections:
        out.append(f"<section><h2>{html.escape(section.title)}</h2>")
        _html_blocks(section.blocks, folder, out)
        out.append("</section>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"
