"""Text sources by name: the built-in grammar, local text files, and Hugging Face hub corpora.

A source yields the documents of one split ("train" or "val") in a fixed order. A corpus with its
own validation split uses it; any other source holds out a deterministic fraction of its documents
(`data.val_fraction`), chosen by a hash of (source name, document index), never by random state,
so the hub and a local copy of it give the same split.

Hub corpora stream through `datasets.load_dataset(..., streaming=True)`. With `path` set, the same
code path reads a local copy in the hub's format (parquet / jsonl / txt files, or a clone of the
hub repository), so these loaders are exercised offline too.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import os
import socket
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Tuple

from stlm.config.schema import DataConfig, SourceConfig
from stlm.errors import UserError

Doc = Tuple[str, int]  # (text, invalid UTF-8 sequences replaced while reading it)

SPLITS = ("train", "val")
MAX_DOC_BYTES = 16 << 20  # a longer paragraph of a .txt file is cut into documents at line ends
SNIFF_BYTES = 64 << 10  # how much of each local file is checked for being text
MAX_INVALID_UTF8 = 0.1  # more invalid UTF-8 than this fraction of the sniffed bytes: not a text file
_FFFD = "\ufffd".encode()


def _instruction_output(row: dict) -> str:
    return f"Instruction: {row['instruction']}\nOutput: {row['output']}"


def _first_turn(row: dict) -> str:
    turns = row["conversations"]
    return f"Question: {turns[0]['value']}\nAnswers: {turns[1]['value']}"


@dataclass(frozen=True)
class HubCorpus:
    """A Hugging Face hub dataset streamed with `datasets`; rows become documents."""

    hub_id: str
    config: Optional[str] = None
    val_split: Optional[str] = None  # its own validation split; None: hold out data.val_fraction
    to_text: Optional[Callable[[dict], str]] = None  # row -> document; None: the row's text field


HUB_CORPORA: dict[str, HubCorpus] = {
    # Eldan & Li 2023, https://arxiv.org/abs/2305.07759
    "tinystories": HubCorpus("roneneldan/TinyStories", val_split="validation"),
    # BabyLM 2024 strict-small / strict corpora (Choshen et al. 2024, https://arxiv.org/abs/2404.06214);
    # no official hub copy exists: this maintained parquet mirror has train / dev / test splits.
    "babylm_10m": HubCorpus("AlienKevin/BabyLM_2024_10M", val_split="dev"),
    "babylm_100m": HubCorpus("AlienKevin/BabyLM_2024_100M", val_split="dev"),
    "simple_wiki": HubCorpus("wikimedia/wikipedia", "20231101.simple"),
    "openwebtext": HubCorpus("Skylion007/openwebtext"),  # Gokaslan & Cohen 2019
    "fineweb_edu": HubCorpus("HuggingFaceFW/fineweb-edu", "sample-10BT"),  # Penedo et al. 2024
    # The two formatted parts of the STLM data mix (trainers/utils.py create_stlm_data_mix)
    "python_code": HubCorpus("jtatman/python-code-dataset-500k", to_text=_instruction_output),
    "openhermes": HubCorpus("teknium/OpenHermes-2.5", to_text=_first_turn),
}
SOURCES = ("grammar", "text", *HUB_CORPORA)
TEXT_SUFFIXES = (".txt", ".jsonl", ".txt.gz", ".jsonl.gz")
HUB_FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".txt": "text",
                     ".csv": "csv", ".arrow": "arrow"}


def held_out(source: str, index: int, fraction: float) -> bool:
    """Whether document `index` of `source` belongs to the held-out validation split."""
    digest = hashlib.blake2b(f"{source}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") < fraction * 2.0**64


def is_endless(src: SourceConfig) -> bool:
    """The grammar generates stories forever unless `max_documents` caps it."""
    return src.name == "grammar" and src.max_documents is None


def check_source(src: SourceConfig, where: str) -> None:
    if src.name not in SOURCES:
        raise UserError(f"{where}.name={src.name!r} is not a known source; valid: {', '.join(SOURCES)} "
                        f"(see docs/adding_a_dataset.md to add one)")
    if src.weight <= 0:
        raise UserError(f"{where}.weight={src.weight} must be > 0")
    if src.name == "text" and not src.path:
        raise UserError(f"{where}: source 'text' needs a path: data.path=/path/to/file_or_folder (with "
                        f"data=text) or {where}.path=... (.txt, .jsonl, or .gz of either)")
    if src.path:
        _existing(src.path, where)


def read_source(src: SourceConfig, split: str, cfg: DataConfig, where: str) -> Iterator[Doc]:
    """The non-empty documents of `split` of one source; `where` (e.g. data.sources.0) names it in errors."""
    check_source(src, where)
    own_val = False
    if src.name == "grammar":
        from stlm.data.grammar import generate_stories

        docs: Iterable[Doc] = ((story, 0) for story in generate_stories(src.seed, src.max_documents))
    elif src.name == "text":
        docs = _text_documents(src, cfg.invalid_utf8, where)
    else:
        docs, own_val = _hub_documents(src, split, cfg, where)
    for index, (text, bad) in enumerate(islice(docs, src.max_documents)):
        if not own_val and held_out(src.name, index, cfg.val_fraction) != (split == "val"):
            continue
        if text.strip():
            yield text, bad


# ---------------------------------------------------------------------------------------------
# Local text files
# ---------------------------------------------------------------------------------------------


def _existing(path: str, where: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{where}.path={path} does not exist (relative paths start at {Path.cwd()}); "
                        f"point it to an existing file or folder")
    return p


def _text_kind(path: Path) -> Optional[str]:
    name = path.name.lower()
    return next((s.split(".")[1] for s in TEXT_SUFFIXES if name.endswith(s)), None)


def _list_text_files(path: Path, where: str) -> list[Path]:
    """The .txt / .jsonl (.gz) files of a path: itself, or a folder's files sorted by relative path."""
    if not path.is_dir():
        if _text_kind(path) is None:
            raise UserError(f"{where}.path={path} is not a {' / '.join(TEXT_SUFFIXES)} file")
        return [path]
    files = sorted((p for p in path.rglob("*") if p.is_file() and _text_kind(p)),
                   key=lambda p: p.relative_to(path).as_posix())
    if not files:
        raise UserError(f"{where}.path={path} holds no {' / '.join(TEXT_SUFFIXES)} files")
    return files


def _text_documents(src: SourceConfig, invalid_utf8: str, where: str) -> Iterator[Doc]:
    for file in _list_text_files(_existing(src.path, where), where):
        if _text_kind(file) == "jsonl":
            yield from _jsonl_docs(file, src.text_field, invalid_utf8, where)
        else:
            yield from _txt_docs(file, invalid_utf8, where)


def check_is_text(head: bytes, file: Path, where: str) -> None:
    """Refuse a file that is not text (an image or archive renamed .txt, UTF-16), judged by its
    first bytes `head` (decompressed): a NUL byte, or mostly invalid UTF-8. Binary input would
    otherwise become a few huge "documents" that make tokenizer training take hours."""
    fix = f"convert it to UTF-8 text or remove it from {where}.path"
    if b"\0" in head:
        raise UserError(f"{where}.path: {file} is not a text file (it contains NUL bytes: binary data, "
                        f"or UTF-16 text); {fix}")
    invalid = head.decode("utf-8", errors="replace").count("\ufffd") - head.count(_FFFD)
    if invalid > max(MAX_INVALID_UTF8 * len(head), 8):  # a short Latin-1 note is still text
        raise UserError(f"{where}.path: {file} is not UTF-8 text ({invalid} invalid UTF-8 sequences in its "
                        f"first {len(head):,} bytes); {fix}")


def _lines(file: Path, where: str) -> Iterator[Tuple[int, int, bytes]]:
    """(line number, byte offset, line) of a file, gunzipped if it ends in .gz, after checking
    that its first `SNIFF_BYTES` are text (read once: a named pipe works too)."""
    opener = gzip.open if file.name.lower().endswith(".gz") else open
    offset = 0
    try:
        with opener(file, "rb") as f:
            head = f.read(SNIFF_BYTES)
            check_is_text(head, file, where)
            if head and not head.endswith(b"\n"):
                head += f.readline()  # the rest of the line the sniffed bytes end in
            for number, line in enumerate(itertools.chain(io.BytesIO(head), f), start=1):
                yield number, offset, line
                offset += len(line)
    except (gzip.BadGzipFile, EOFError) as e:
        raise UserError(f"{where}.path: cannot read {file} as gzip ({e}); give .gz only to "
                        f"gzip-compressed files") from None


def _decode(raw: bytes, file: Path, offset: int, line: int, invalid_utf8: str) -> Doc:
    """UTF-8 text of `raw` and the number of invalid sequences replaced by U+FFFD."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError as e:
        if invalid_utf8 == "fail":
            packed = " of the decompressed text" if file.name.lower().endswith(".gz") else ""
            bad_line = line + raw.count(b"\n", 0, e.start)
            raise UserError(
                f"{file}: invalid UTF-8 at byte offset {offset + e.start}{packed} (line {bad_line}); "
                f"fix the file, or set data.invalid_utf8=replace to replace bad bytes with U+FFFD "
                f"and count them") from None
    text = raw.decode("utf-8", errors="replace")
    return text, text.count("\ufffd") - raw.count(_FFFD)  # genuine U+FFFD are not replacements


def _txt_docs(file: Path, invalid_utf8: str, where: str) -> Iterator[Doc]:
    """Documents of a plain text file: paragraphs separated by blank lines."""
    lines: list[bytes] = []
    size = start = first_line = 0
    for number, offset, line in _lines(file, where):
        if line.strip():
            if not lines:
                start, first_line = offset, number
            lines.append(line)
            size += len(line)
            if size < MAX_DOC_BYTES:
                continue
        if lines:
            yield _decode(b"".join(lines).rstrip(b"\r\n"), file, start, first_line, invalid_utf8)
            lines, size = [], 0
    if lines:
        yield _decode(b"".join(lines).rstrip(b"\r\n"), file, start, first_line, invalid_utf8)


def _jsonl_docs(file: Path, field: str, invalid_utf8: str, where: str) -> Iterator[Doc]:
    """Documents of a JSON-lines file: the `field` string of each object."""
    for number, offset, line in _lines(file, where):
        if not line.strip():
            continue
        text, bad = _decode(line, file, offset, number, invalid_utf8)
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{file}:{number}: not valid JSON ({e.msg}); each line of a .jsonl file "
                            f"must be one JSON object") from None
        value = row.get(field) if isinstance(row, dict) else None
        if not isinstance(value, str):
            fields = ", ".join(row) if isinstance(row, dict) else type(row).__name__
            raise UserError(f"{file}:{number}: no text field {field!r} (found: {fields}); "
                            f"set {where}.text_field=NAME")
        yield value, bad


# ---------------------------------------------------------------------------------------------
# Hugging Face hub corpora (or local copies of them)
# ---------------------------------------------------------------------------------------------


def _hub_documents(src: SourceConfig, split: str, cfg: DataConfig, where: str) -> Tuple[Iterator[Doc], bool]:
    """Documents of `split` and whether they come from the corpus's own validation split."""
    spec = HUB_CORPORA[src.name]
    splits = _open_hub(src, spec, cfg, where)
    val = next((s for s in (spec.val_split, "validation") if s in splits), None) if spec.val_split else None
    name = val if split == "val" and val else "train"
    if name not in splits:
        raise UserError(f"{where}: '{src.name}' has no '{name}' split (found: {', '.join(splits)}); "
                        f"name the files train-*.parquet / validation-*.parquet")
    return _rows_to_docs(splits[name], spec, src, where), val is not None


def _rows_to_docs(rows: Iterable[dict], spec: HubCorpus, src: SourceConfig, where: str) -> Iterator[Doc]:
    try:
        for row in rows:
            text = spec.to_text(row) if spec.to_text else row.get(src.text_field)
            if not isinstance(text, str):
                raise UserError(f"{where}: rows of '{src.name}' have no text field {src.text_field!r} "
                                f"(fields: {', '.join(row)}); set {where}.text_field=NAME")
            yield text, 0
    except UserError:
        raise
    except Exception as e:  # datasets and pyarrow raise many types for a malformed file
        if not src.path:
            raise
        raise UserError(f"{where}: reading the local copy {src.path} of '{src.name}' failed: {e}") from e


def _open_hub(src: SourceConfig, spec: HubCorpus, cfg: DataConfig, where: str):
    """The streaming splits (an IterableDatasetDict) of the corpus or of its local copy."""
    from datasets import load_dataset

    if src.path:
        path = _existing(src.path, where)
        if path.is_dir():  # a hub-repository clone (README configs) or a folder of split files
            config = (src.hub_config or spec.config) if (path / "README.md").is_file() else None
            args: dict = {"path": str(path), "name": config}
        else:
            args = {"path": _file_builder(path, where), "data_files": {"train": str(path)}}
        try:
            return load_dataset(**args, streaming=True)
        except Exception as e:
            raise UserError(f"{where}: datasets could not read {path} as a local copy of "
                            f"'{src.name}': {e}") from e
    hub_id, config = src.hub_id or spec.hub_id, src.hub_config or spec.config
    fix = (f"use a local copy: {where}.path=/path/to/copy (the hub's parquet/jsonl files or a clone "
           f"of the repository), or HF_HUB_OFFLINE=1 if it is in the Hugging Face cache")
    label = f"'{hub_id}'" + (f" ({config})" if config else "") + f" for source '{src.name}'"
    if not hub_offline():
        check_hub_reachable(cfg.hub_timeout_s, label, fix)
    try:
        return load_dataset(hub_id, config, streaming=True)
    except Exception as e:
        raise UserError(f"could not open {label}: {e}; {fix}") from e


def _file_builder(path: Path, where: str) -> str:
    name = path.name.lower()
    for packed in (".gz", ".bz2", ".xz", ".zst"):
        name = name.removesuffix(packed)
    builder = HUB_FILE_BUILDERS.get(Path(name).suffix)
    if builder is None:
        raise UserError(f"{where}.path={path}: unknown file type; a local copy of a hub corpus is "
                        f"{', '.join(HUB_FILE_BUILDERS)} files (optionally compressed) or a folder")
    return builder


def hub_offline() -> bool:
    """True when `datasets` is told to stay offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), read
    at call time so a setting made after `datasets` was imported still counts."""
    import datasets.config

    env = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
              for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return env or bool(datasets.config.HF_HUB_OFFLINE)


def check_hub_reachable(timeout_s: float, label: str, fix: str) -> None:
    """Fail within `timeout_s` when the hub (or the https proxy) accepts no TCP connection."""
    endpoint = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    proxy = urllib.request.getproxies().get("https")
    target = urllib.parse.urlparse(proxy) if proxy else endpoint
    host, port = target.hostname or "huggingface.co", target.port or (443 if target.scheme == "https" else 80)
    outcome: list = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    thread = threading.Thread(target=connect, daemon=True)  # name resolution ignores socket timeouts
    thread.start()
    thread.join(timeout_s)
    if not outcome or outcome[0] is not None:
        why = f"{outcome[0]}" if outcome else f"no answer in {timeout_s:g} s"
        raise UserError(f"cannot reach the Hugging Face hub ({host}:{port}: {why}) to stream {label}; "
                        f"{fix}")
