"""`stlm import SOURCE OUT_RUN`: a transformers `LlamaForCausalLM` folder (with its tokenizer), or
a Llama GGUF file (llama.cpp's format, through transformers' GGUF loader, which dequantises it to
float), becomes an ordinary stlm run directory, so `stlm eval`, `stlm generate`, `stlm export` and
fine-tuning (`stlm train init_from=OUT_RUN ...` or `resume=OUT_RUN`) work on it.

The weights are renamed by `stlm.hf.llama.HF_NAMES` read backwards (the export's own mapping), the
shape by `model_config_from_llama`, the tokenizer kept as is (`stlm.tokenizers.hf`). Before the
run directory appears, the imported model's logits are compared with transformers' on a short
text; the difference is recorded in import.json and a mismatch refuses the import.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from stlm.config.loader import compose_config
from stlm.config.schema import RunConfig, TokenizerConfig
from stlm.errors import UserError
from stlm.hf.gguf_file import llama_gguf
from stlm.hf.llama import model_config_from_llama, stlm_name
from stlm.runs import CHECKPOINTS_DIR, TOKENIZER_DIR, write_config

IMPORT_FILE = "import.json"
PARITY_TEXT = "Once upon a time, a small model read a large one's weights."
PARITY_TOLERANCE = 1e-3  # max |logit difference| in float32
IMPORTED_DATA = "grammar"  # the data preset an imported run's config names


def import_llama(source: str | Path, out_dir: str | Path, gguf_file: str | None = None) -> Path:
    """Import `source`: a transformers folder, a .gguf file, or a folder holding one (`gguf_file`
    names it when there are several)."""
    from transformers import AutoConfig, LlamaForCausalLM

    from stlm.models import build_model
    from stlm.tokenizers.hf import HFTokenizer
    from stlm.train.checkpoint import save_checkpoint
    from stlm.train.optim import build_optimizer

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; choose a new run folder")
    gguf = llama_gguf(source, gguf_file)
    folder = Path(source) if gguf is None else gguf.folder
    name = folder.name if gguf is None else Path(gguf.name).stem
    load = {} if gguf is None else {"gguf_file": gguf.name}
    origin = folder if gguf is None else gguf.path  # what messages and import.json name
    try:
        hf_cfg = AutoConfig.from_pretrained(folder, **load)
    except (ValueError, OSError) as e:
        raise UserError(f"transformers cannot read the config of {origin} ({e})") from e
    if hf_cfg.model_type != "llama":
        raise UserError(f"{origin} holds a '{hf_cfg.model_type}' model; stlm imports Llama models "
                        f"(LlamaForCausalLM) only")
    try:
        model_cfg = model_config_from_llama(hf_cfg, name=name)
    except ValueError as e:
        raise UserError(f"cannot import {origin}: {e}") from e
    tokenizer = HFTokenizer.from_pretrained(folder, **load)
    hf = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32, **load).eval()
    model = build_model(model_cfg, tokenizer.vocab_size)
    state = {stlm_name(k): v for k, v in hf.state_dict().items() if "rotary_emb" not in k}
    if model_cfg.tie_embeddings:
        state["head.linear.weight"] = state["embedder.token.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"cannot import {origin}: weights missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.eval()
    diff = _logit_difference(model, hf, tokenizer)
    if not diff <= PARITY_TOLERANCE:
        raise UserError(f"imported {origin}, but its logits differ from transformers' by {diff:.2e} "
                        f"(> {PARITY_TOLERANCE}); the model uses a feature stlm's Llama lacks")

    tmp = out.with_name(f".tmp-import-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / CHECKPOINTS_DIR).mkdir(parents=True)
    tokenizer.save(tmp / TOKENIZER_DIR)
    # the run's data: the built-in corpus (its preset, finite), read with the imported tokenizer, so
    # that `stlm eval RUN` (bits per byte) and `stlm train resume=RUN` have data to read
    data = compose_config([f"data={IMPORTED_DATA}"]).data
    data.tokenizer = TokenizerConfig(kind="hf", vocab_size=tokenizer.vocab_size,
                                     path=str((out / TOKENIZER_DIR).resolve()))
    cfg = RunConfig(model=model_cfg, run_name=out.name, runs_dir=str(out.parent), data=data)
    write_config(tmp, cfg)
    meta = {"tokens": 0, "elapsed_s": 0.0, "val_loss": None, "total_steps": None,
            "tokenizer": tokenizer.fingerprint(), "imported_from": str(Path(origin).resolve())}
    # an optimizer that has taken no step: the checkpoint carries no optimizer state
    save_checkpoint(tmp / CHECKPOINTS_DIR, 0, model, build_optimizer(model, cfg.train, torch.device("cpu")), meta)
    info = {"source": str(Path(origin).resolve()), "architecture": (hf_cfg.architectures or ["LlamaForCausalLM"])[0],
            "parameters": sum(p.numel() for p in hf.parameters()), "max_logit_difference": diff,
            "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eot_id}
    if gguf is not None:  # the logits are compared with the dequantised file, not the float original
        info |= {"format": "gguf", "gguf_tensor_types": gguf.tensor_types}
    (tmp / IMPORT_FILE).write_text(json.dumps(info, indent=1))
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out


@torch.no_grad()
def _logit_difference(model, hf, tokenizer) -> float:
    ids = tokenizer.encode(PARITY_TEXT)[: model.cfg.context_length]
    x = torch.tensor([ids])
    return (model(x).logits - hf(x).logits).abs().max().item()
