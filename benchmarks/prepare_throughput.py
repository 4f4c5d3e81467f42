"""Throughput of `prepare_data` (MB of text per second) for the byte, trained-BPE and GPT-2
tokenizers, single-process (num_proc=1) against num_proc=2, on real text from ../shared/data.

    python benchmarks/prepare_throughput.py [--repeat 3] [--procs 2]

The corpus is WikiText-2 (valid + test), the English Wikipedia sample with its XML and wiki markup
stripped crudely, and tiny Shakespeare, written `--repeat` times as .txt files. Each run prepares
into a fresh cache folder; the time includes starting the worker processes, not training the BPE
(it is trained once beforehand and passed as data.tokenizer.path). CPU seconds of the parent process
and of its workers are printed too: on a machine shared with other work, wall-clock speedups are
depressed, while the parent's CPU time (its serial part) bounds the speedup on idle cores.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

from stlm.config.schema import DataConfig, SourceConfig, TokenizerConfig
from stlm.data.mix import training_text
from stlm.data.prepare import prepare_data
from stlm.tokenizers import build_tokenizer

SHARED = Path(os.environ.get("STLM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
GPT2_DIR = SHARED / "gpt2-bpe"


def strip_wiki(xml: str) -> str:
    """The article text of a MediaWiki XML export, markup removed crudely."""
    text = "\n\n".join(re.findall(r"<text[^>]*>(.*?)</text>", xml, flags=re.S))
    text = html.unescape(text)
    text = re.sub(r"<ref[^>]*/>|<ref.*?</ref>|<!--.*?-->", "", text, flags=re.S)
    for _ in range(3):  # nested templates and tables
        text = re.sub(r"\{\{[^{}]*\}\}|\{\|[^{}]*?\|\}", "", text, flags=re.S)
    text = re.sub(r"\[\[(?:[^\]|]*\|)?([^\]]*)\]\]", r"\1", text)
    text = re.sub(r"\[https?://\S+ ?([^\]]*)\]|<[^>]+>|'{2,}", r"\1", text)
    return re.sub(r"\n{3,}", "\n\n", text)


def write_corpus(folder: Path, repeat: int) -> int:
    pieces = {"wikitext_valid.txt": (SHARED / "corpora/wikitext-2/valid.txt").read_text(),
              "wikitext_test.txt": (SHARED / "corpora/wikitext-2/test.txt").read_text(),
              "shakespeare.txt": (SHARED / "corpora/tinyshakespeare/input.txt").read_text(),
              "enwiki.txt": "".join(strip_wiki(p.read_text(errors="replace"))
                                    for p in sorted((SHARED / "corpora/enwiki-sample-gensim").glob("*.xml")))}
    size = 0
    for k in range(repeat):
        (folder / f"copy{k}").mkdir(parents=True)
        for name, text in pieces.items():
            size += (folder / f"copy{k}" / name).write_bytes(text.encode())
    return size


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run(corpus: Path, tokenizer: TokenizerConfig, num_proc: int, cache: Path) -> dict:
    """Wall time, CPU time of this process and of its (reaped) workers, and the MB of text prepared."""
    cfg = DataConfig(name="bench", sources=[SourceConfig(name="text", path=str(corpus))], tokenizer=tokenizer,
                     num_proc=num_proc, cache_dir=str(cache), max_val_tokens=None)
    parent, workers = cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    data = prepare_data(cfg, progress=False)
    wall = time.perf_counter() - start
    splits = data.meta["splits"].values()
    return {"wall": wall, "parent": cpu_seconds(resource.RUSAGE_SELF) - parent,
            "workers": cpu_seconds(resource.RUSAGE_CHILDREN) - workers,
            "mb": sum(s["bytes"] for s in splits) / 1e6, "tokens": sum(s["tokens"] for s in splits)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="copies of the corpus (default 3)")
    parser.add_argument("--procs", type=int, default=2, help="num_proc of the parallel run (default 2)")
    parser.add_argument("--bpe-vocab", type=int, default=4096)
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"shared data not found at {SHARED}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        size = write_corpus(root / "corpus", args.repeat)
        print(f"corpus: {size / 1e6:.1f} MB of text ({args.repeat} copies of WikiText-2 valid+test, "
              f"the enwiki sample, tiny Shakespeare)")
        bpe_cfg = TokenizerConfig(kind="bpe", vocab_size=args.bpe_vocab, train_chars=2_000_000)
        source = DataConfig(sources=[SourceConfig(name="text", path=str(root / "corpus"))], tokenizer=bpe_cfg)
        build_tokenizer(bpe_cfg, lambda: training_text(source, bpe_cfg.train_chars)).save(root / "bpe")
        tokenizers = {"byte": TokenizerConfig(kind="byte"),
                      f"bpe-{args.bpe_vocab}": TokenizerConfig(kind="bpe", path=str(root / "bpe")),
                      "gpt2": TokenizerConfig(kind="gpt2", path=str(GPT2_DIR))}
        print(f"{'tokenizer':<10}{'tokens':>12}{'1 proc MB/s':>13}{f'{args.procs} procs MB/s':>15}{'speedup':>9}"
              f"{'CPU s, 1 proc':>15}{f'CPU s, {args.procs} procs (parent+workers)':>36}{'idle-core bound':>17}")
        for name, tok in tokenizers.items():
            one = run(root / "corpus", tok, 1, root / f"cache-{name}-1")
            many = run(root / "corpus", tok, args.procs, root / f"cache-{name}-{args.procs}")
            assert one["mb"] == many["mb"]
            # what the speedup would be with the cores to ourselves: the parent's work is serial
            bound = one["parent"] / max(many["parent"], (many["parent"] + many["workers"]) / args.procs)
            print(f"{name:<10}{one['tokens']:>12,}{one['mb'] / one['wall']:>13.2f}{many['mb'] / many['wall']:>15.2f}"
                  f"{one['wall'] / many['wall']:>8.2f}x{one['parent']:>15.2f}"
                  f"{many['parent']:>25.2f} + {many['workers']:<8.2f}{bound:>16.2f}x", flush=True)
    print(f"{os.cpu_count()} CPUs; load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}. Other work on "
          f"the machine depresses the measured numbers, the parallel ones most; the idle-core bound is "
          f"CPU s (1 proc) / max(parent CPU s, all CPU s / procs) of the parallel run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
