"""The studies' real-text corpus, built from the public data in the data folder's corpora/:
tiny shakespeare + WikiText-2 validation + the enwiki sample (markup stripped), mixed as `text`
sources with a held-out fraction for validation; WikiText-2 test is a separate held-out text
scored in bits per byte after training.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch

from stlm.batch import Batch
from stlm.config.schema import DataConfig, SourceConfig, TokenizerConfig
from stlm.datadir import missing_data
from stlm.errors import UserError
from stlm.study.mediawiki import STRIP_VERSION, export_to_jsonl

CORPORA = "corpora"
SHAKESPEARE = "tinyshakespeare/input.txt"
WIKITEXT_TRAIN = "wikitext-2/valid.txt"
WIKITEXT_TEST = "wikitext-2/test.txt"
ENWIKI = "enwiki-sample-gensim"


def _required(root: Path, relative: str) -> Path:
    path = root / CORPORA / relative
    if not path.exists():
        raise missing_data(f"the study corpus file {path}")
    return path


def enwiki_text(root: Path, cache_dir: Path) -> Path:
    """The enwiki sample as jsonl articles of plain text, built once and cached by content."""
    xml = sorted(_required(root, ENWIKI).glob("*.xml"))
    if not xml:
        raise UserError(f"{root / CORPORA / ENWIKI} holds no .xml export")
    ident = hashlib.blake2b(digest_size=8)
    for p in xml:
        st = p.stat()
        ident.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    out = cache_dir / "study-text" / f"enwiki-v{STRIP_VERSION}-{ident.hexdigest()}.jsonl"
    if not out.exists():
        if export_to_jsonl(xml, out) == 0:
            raise UserError(f"no article text found in {xml[0].parent}")
    return out


def study_data(root: Path, cache_dir: str, bpe_vocab: int, val_fraction: float = 0.02) -> DataConfig:
    """The DataConfig of the study corpus (the enwiki text is extracted into `cache_dir`)."""
    wiki = enwiki_text(root, Path(cache_dir).expanduser())
    sources = [SourceConfig(name="text", path=str(_required(root, SHAKESPEARE))),
               SourceConfig(name="text", path=str(_required(root, WIKITEXT_TRAIN))),
               SourceConfig(name="text", path=str(wiki), text_field="text")]
    return DataConfig(name="study-text", sources=sources,
                      tokenizer=TokenizerConfig(kind="bpe", vocab_size=bpe_vocab),
                      val_fraction=val_fraction, cache_dir=cache_dir)


def test_text_ids(root: Path, tokenizer, max_tokens: int) -> np.ndarray:
    """WikiText-2 test as token ids: end-of-text, then its paragraphs each followed by end-of-text
    (as training documents are), cut to `max_tokens` + 1 ids."""
    text = _required(root, WIKITEXT_TEST).read_text(encoding="utf-8")
    ids: list[int] = [tokenizer.eot_id]
    for para in re.split(r"\n\s*\n", text):
        if para.strip():
            ids += tokenizer.encode(para.strip("\n")) + [tokenizer.eot_id]
            if len(ids) > max_tokens:
                break
    return np.asarray(ids[: max_tokens + 1], dtype=np.int64)


def window_batches(ids: np.ndarray, context: int, batch_size: int):
    """Non-overlapping windows of `context` inputs with their next-token targets."""
    n = (len(ids) - 1) // context
    if n == 0:
        raise UserError(f"the held-out text has {len(ids)} tokens, fewer than one window of {context}")
    x = torch.from_numpy(ids[: n * context].reshape(n, context))
    y = torch.from_numpy(ids[1 : n * context + 1].reshape(n, context))
    for i in range(0, n, batch_size):
        yield Batch(x[i : i + batch_size], y[i : i + batch_size])
