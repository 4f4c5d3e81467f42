"""A run's tokenizer as files that `transformers.AutoTokenizer.from_pretrained` loads, encoding
exactly as stlm does (one difference: transformers reads the text "<|endoftext|>" as the special
token, stlm as ordinary text).

- A trained BPE (or an imported model's tokenizer) is already a `tokenizers` tokenizer.json: it is
  wrapped in `PreTrainedTokenizerFast`.
- GPT-2 runs keep only tiktoken's `r50k_base.tiktoken` (token bytes -> rank). GPT-2's own files are
  rebuilt from it: vocab.json maps each token, written in the byte-to-unicode alphabet, to its
  rank; merges.txt lists, for every multi-byte token in rank order, the two parts that byte-pair
  merging joins into it (found by running the merges of lower rank on its bytes). That is exactly
  GPT-2's original `vocab.bpe`; tokenizer.json holds the same byte-level BPE, which encodes like tiktoken.
- The byte tokenizer (ids 0-255 the UTF-8 bytes, 256 end of text) is a byte-level BPE with no
  merges: each byte, written in the byte-to-unicode alphabet, is its own token.
"""

from __future__ import annotations

import json
from pathlib import Path

from stlm.tokenizers.base import EOT_TEXT, Tokenizer
from stlm.tokenizers.bpe import bytes_to_unicode


def save_hf_tokenizer(tokenizer: Tokenizer, stlm_files: Path, out: Path) -> None:
    """Write `tokenizer` (saved by stlm in `stlm_files`) into `out` for `AutoTokenizer`."""
    if tokenizer.kind in ("bpe", "hf"):
        from tokenizers import Tokenizer as RustTokenizer
        from transformers import PreTrainedTokenizerFast

        bos = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eot_id
        rust = RustTokenizer.from_file(str(stlm_files / "tokenizer.json"))
        fast = PreTrainedTokenizerFast(tokenizer_object=rust, eos_token=rust.id_to_token(tokenizer.eot_id),
                                       bos_token=rust.id_to_token(bos))
    elif tokenizer.kind == "gpt2":
        ranks = {tokenizer.token_bytes(i): i for i in range(tokenizer.eot_id)}
        vocab, merges = gpt2_vocab_and_merges(ranks)
        vocab[EOT_TEXT] = tokenizer.eot_id
        (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                        encoding="utf-8")
        fast = _byte_level_bpe(vocab, merges, split_words=True)
    elif tokenizer.kind == "byte":
        to_char = bytes_to_unicode()
        fast = _byte_level_bpe({**{to_char[b]: b for b in range(256)}, EOT_TEXT: tokenizer.eot_id}, [],
                               split_words=False)
    else:
        raise ValueError(f"no transformers tokenizer for tokenizer kind {tokenizer.kind!r}")
    fast.save_pretrained(out)


def _byte_level_bpe(vocab: dict[str, int], merges: list[tuple[str, str]], split_words: bool):
    """A fast tokenizer running byte-pair `merges` over the bytes of the text (GPT-2's regex
    pre-split into words first with `split_words`); end of text is EOT_TEXT."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    hf = HFTokenizer(models.BPE(vocab, merges))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=split_words)
    hf.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=hf, eos_token=EOT_TEXT, bos_token=EOT_TEXT)


def gpt2_vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's vocab.json and merges.txt entries from tiktoken's token -> rank table."""
    to_char = bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(to_char[x] for x in b)

    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) > 1:
            left, right = _last_merge(token, rank, ranks)
            merges.append((text(left), text(right)))
    return {text(t): r for t, r in ranks.items()}, merges


def _last_merge(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two parts of `token` after merging its bytes with every merge ranked below `rank`,
    lowest rank first (byte-pair encoding as tiktoken runs it)."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], rank))
        if ranks.get(parts[best] + parts[best + 1], rank) >= rank:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} (rank {rank}) is not one merge of lower-ranked tokens")
    return parts[0], parts[1]
