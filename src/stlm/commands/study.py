"""`stlm study sllama [--budget X] [--out DIR]`: run a predefined multi-model study."""

from __future__ import annotations

import argparse
from pathlib import Path

from stlm.errors import UserError

EPILOG = """studies:
  sllama   train llama_untied, llama_tied, sllama and SLlama's component ablations on the same
           real text, tokens and seed; evaluate bits per byte, BLiMP (full and BabyLM-filtered)
           and the built-in grammar's minimal pairs; write results.{md,json,png} (docs/sllama_study.md)
  compress train the quickstart model, then run every `stlm compress` method at several strengths;
           bits per byte and minimal pairs against bytes on disk, with the Pareto frontier
           (docs/compression_study.md); needs no data folder
  schedule cosine, linear, WSD and inverse-sqrt learning rates, and dropout schedules, on the
           built-in corpus at equal tokens (docs/knob_studies.md)
  optimizer AdamW vs Muon at equal tokens, a 3-point learning-rate sweep each (docs/knob_studies.md)
  distill  a student alone vs distilled from a teacher trained on 3x the tokens (docs/knob_studies.md)
  conditional  dense tiny-1m vs LayerSkip (full, exit at a layer, confidence exit), pause tokens
           and mixture-of-depths at equal tokens on the built-in corpus: FLOPs spent per token
           (counted), tokens/s, bits per byte, the grammar's minimal pairs and BLiMP when the data
           folder has it; writes results.{md,json,png} (docs/conditional.md)
  byte     train BPE tied and untied, byte-token and byte-pooled models with the same core on the
           same text at equal bytes seen; report embedding+head and total parameters, bits per
           byte, BLiMP, training bytes/s and peak memory (docs/byte_study.md)

The default budget (1) fits 2 CPU cores in about 30 minutes; use --budget 50 or more on a GPU.
A killed study resumes when run again with the same arguments."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from stlm.study import STUDIES
    from stlm.study.sllama import BPE_VOCAB, MODELS

    p.add_argument("study", choices=sorted(STUDIES), help="which study")
    p.add_argument("--budget", type=float, default=1.0,
                   help="multiplies training tokens and evaluation sizes (default 1: ~30 min on 2 CPU cores)")
    p.add_argument("--out", default=None, help="output folder (default runs/studies/<study>)")
    p.add_argument("--data-dir", default=None,
                   help="local data folder, laid out as docs/data.md (default $STLM_DATA_DIR, else "
                        "~/.cache/stlm/data)")
    from stlm.study.byte import ARMS

    p.add_argument("--models", default=None, help=f"comma-separated subset of: {', '.join(MODELS)} "
                                                  f"(sllama) or {', '.join(ARMS)} (byte)")
    p.add_argument("--gpt2", action="store_true",
                   help="byte study: GPT-2's tokenizer for the BPE and byte-pooled arms (the paper's; slower)")
    p.add_argument("--bpe-vocab", type=int, default=BPE_VOCAB, help="BPE vocabulary trained on the corpus")
    p.add_argument("--paper-vocab", action="store_true",
                   help="sllama: keep the presets' 32,000 embedding rows (the paper's parameter counts; slower)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    p.add_argument("--seeds", type=int, default=1,
                   help="runs per model with seeds 1337, 1338, ...; the table shows mean ± spread (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _data_root(explicit: str | None) -> Path:
    from stlm.datadir import data_dir, missing_data

    root = data_dir(explicit)
    if root is None:
        raise missing_data("the study's local data folder (corpora/, blimp/, babylm-eval/)")
    return root.resolve()


def run(args: argparse.Namespace) -> int:
    from stlm.study.knobs import STUDY_VARIANTS, run_knob_study
    from stlm.study.sllama import BPE_VOCAB, MODELS, StudySettings, run_study
    from stlm.tokenizers.bpe import MIN_VOCAB

    if not args.budget > 0:
        raise UserError(f"--budget must be > 0, got {args.budget}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    if args.study == "compress":
        return _compress_study(args, BPE_VOCAB)
    if args.study == "conditional":
        return _conditional_study(args)
    out = Path(args.out or f"runs/studies/{args.study}")
    if args.study in STUDY_VARIANTS:  # knob studies train on the built-in corpus: no data folder
        run_knob_study(args.study, args.budget, out, args.device, args.threads, not args.no_progress)
        return 0
    if args.bpe_vocab < MIN_VOCAB:
        raise UserError(f"--bpe-vocab must be at least {MIN_VOCAB} (256 bytes + end-of-text), "
                        f"got {args.bpe_vocab}")
    chosen = tuple(m.strip() for m in args.models.split(",") if m.strip()) if args.models else None
    if args.study == "byte":
        from stlm.study.byte import ARMS, ByteStudySettings, run_byte_study

        run_byte_study(ByteStudySettings(budget=args.budget, out=Path(args.out or "runs/studies/byte"),
                                         data_root=_data_root(args.data_dir), arms=chosen or ARMS,
                                         bpe_vocab=args.bpe_vocab, gpt2=args.gpt2, device=args.device,
                                         threads=args.threads, progress=not args.no_progress))
        return 0
    models = chosen or MODELS
    settings = StudySettings(budget=args.budget, out=Path(args.out or f"runs/studies/{args.study}"),
                             data_root=_data_root(args.data_dir), models=models, bpe_vocab=args.bpe_vocab,
                             paper_vocab=args.paper_vocab, device=args.device,
                             threads=args.threads, progress=not args.no_progress, seeds=args.seeds)
    run_study(settings)
    return 0


def _compress_study(args: argparse.Namespace, bpe_vocab: int) -> int:
    from stlm.device import resolve_device
    from stlm.study.compress import CompressStudySettings, run_compress_study

    if args.models or args.paper_vocab or args.data_dir or args.bpe_vocab != bpe_vocab:
        raise UserError("--models, --bpe-vocab, --paper-vocab and --data-dir apply to the sllama study only")
    run_compress_study(CompressStudySettings(budget=args.budget, out=Path(args.out or "runs/studies/compress"),
                                             device=resolve_device(args.device), threads=args.threads,
                                             progress=not args.no_progress))
    return 0


def _conditional_study(args: argparse.Namespace) -> int:
    from stlm.datadir import data_dir
    from stlm.device import resolve_device
    from stlm.study.conditional import ARMS, ConditionalSettings, run_conditional_study

    if args.seeds != 1 or args.paper_vocab or args.gpt2:
        raise UserError("the conditional study runs one seed (1337) and takes no --seeds, --paper-vocab or --gpt2")
    arms = tuple(a.strip() for a in args.models.split(",") if a.strip()) if args.models else tuple(ARMS)
    root = data_dir(args.data_dir)  # BLiMP is scored when the data folder has it
    run_conditional_study(ConditionalSettings(
        budget=args.budget, out=Path(args.out or "runs/studies/conditional"),
        data_root=root.resolve() if root is not None else None, arms=arms,
        device=str(resolve_device(args.device)), threads=args.threads, progress=not args.no_progress))
    return 0
