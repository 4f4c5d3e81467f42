"""Plain text from a MediaWiki XML export (the enwiki sample in the data folder, docs/data.md).

Keeps the prose of main-namespace articles: templates, tables, references, files, categories,
HTML tags and comments are dropped, links become their label, bold/italic quotes and heading
marks go, and each article ends before its "References" / "External links" / ... section.
Good enough for training text, not a full wikitext parser (gensim's `filter_wiki` does the same
job with regular expressions too).
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

from stlm.fileio import atomic_output

STRIP_VERSION = 1  # bump when the output changes, so cached text is rebuilt

_BACK_MATTER = ("references", "external links", "see also", "further reading", "notes",
                "bibliography", "sources", "footnotes", "citations")
_DROP_ELEMENTS = ("math", "gallery", "timeline", "syntaxhighlight", "source", "score", "imagemap",
                  "hiero", "chem", "code", "pre", "table")
_RULES = [
    (re.compile(r"<!--.*?-->", re.S), ""),
    (re.compile(r"<ref[^>]*/>", re.I), ""),
    (re.compile(r"<ref[^>]*>.*?</ref\s*>", re.I | re.S), ""),
    (re.compile(rf"<({'|'.join(_DROP_ELEMENTS)})\b[^>]*>.*?</\1\s*>", re.I | re.S), ""),
]
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_TABLE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)
_FILE_LINK = re.compile(r"\[\[(?:File|Image|Media|Category):[^\[\]]*\]\]", re.I)
_INTERWIKI = re.compile(r"\[\[[a-z][a-z-]{1,11}:[^\[\]]*\]\]")
_LINK = re.compile(r"\[\[(?:[^\[\]|]*\|)?([^\[\]|]*)\]\]")
_EXTERNAL = re.compile(r"\[(?:https?:)?//[^\s\]]+\s*([^\]]*)\]")
_HEADING = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$", re.M)


def _until_stable(pattern: re.Pattern, text: str) -> str:
    """Apply `pattern` -> "" until nothing matches (for nested constructs)."""
    while True:
        new = pattern.sub("", text)
        if new == text:
            return text
        text = new


def strip_markup(wikitext: str) -> str:
    """The prose of one article's wikitext, paragraphs separated by blank lines."""
    text = wikitext
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    text = _until_stable(_TEMPLATE, text)
    text = _until_stable(_TABLE, text)
    text = _until_stable(_FILE_LINK, text)  # after inner links are gone, captions with links too
    text = _INTERWIKI.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _until_stable(_FILE_LINK, text)
    text = _EXTERNAL.sub(r"\1", text)
    for m in _HEADING.finditer(text):  # cut at the first back-matter section
        if m.group(2).strip().lower() in _BACK_MATTER:
            text = text[: m.start()]
            break
    text = _HEADING.sub(r"\2", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = html.unescape(text).replace("\xa0", " ")
    text = re.sub(r"__[A-Z]+__", "", text)
    lines = []
    for line in text.splitlines():
        line = re.sub(r"^[*#:;]+\s*", "", line).strip()
        if line.startswith(("|", "!", "{", "}")):  # leftovers of malformed tables/templates
            continue
        lines.append(re.sub(r"[ \t]{2,}", " ", line))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def articles(xml_path: Path) -> Iterator[tuple[str, str]]:
    """(title, plain text) of each main-namespace, non-redirect page of an XML export."""
    title, ns, text = "", "", None
    for _, elem in ET.iterparse(str(xml_path), events=("end",)):
        tag = elem.tag.rsplit("}", 1)[-1]
        if tag == "title":
            title = elem.text or ""
        elif tag == "ns":
            ns = elem.text or ""
        elif tag == "text":
            text = elem.text or ""
        elif tag == "page":
            if ns == "0" and text and not text.lstrip().lower().startswith("#redirect"):
                plain = strip_markup(text)
                if plain:
                    yield title, plain
            title, ns, text = "", "", None
            elem.clear()


def export_to_jsonl(xml_paths: list[Path], out: Path) -> int:
    """Write one {"title", "text"} line per article to `out` (atomically); return the count."""
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with atomic_output(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for path in xml_paths:
            for title, text in articles(path):
                f.write(json.dumps({"title": title, "text": text}, ensure_ascii=False) + "\n")
                n += 1
    return n
