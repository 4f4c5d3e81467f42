"""`stlm import HF_FOLDER OUT_RUN`: a transformers `LlamaForCausalLM` folder (with its tokenizer)
becomes an ordinary stlm run directory, so `stlm eval`, `stlm generate`, `stlm export` and
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

from stlm.config.schema import DataConfig, RunConfig, TokenizerConfig
from stlm.errors import UserError
from stlm.hf.llama import model_config_from_llama, stlm_name
from stlm.runs import CHECKPOINTS_DIR, TOKENIZER_DIR, write_config

IMPORT_FILE = "import.json"
PARITY_TEXT = "Once upon a time, a small model read a large one's weights."
PARITY_TOLERANCE = 1e-3  # max |logit difference| in float32


def import_llama(hf_dir: str | Path, out_dir: str | Path) -> Path:
    from transformers import AutoConfig, LlamaForCausalLM

    from stlm.models import build_model
    from stlm.tokenizers.hf import HFTokenizer
    from stlm.train.checkpoint import save_checkpoint
    from stlm.train.optim import build_optimizer

    folder, out = Path(hf_dir), Path(out_dir)
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} is not a transformers model folder (no config.json)")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; choose a new run folder")
    hf_cfg = AutoConfig.from_pretrained(folder)
    if hf_cfg.model_type != "llama":
        raise UserError(f"{folder} holds a '{hf_cfg.model_type}' model; stlm imports Llama models "
                        f"(LlamaForCausalLM) only")
    try:
        model_cfg = model_config_from_llama(hf_cfg, name=folder.name)
    except ValueError as e:
        raise UserError(f"cannot import {folder}: {e}") from e
    tokenizer = HFTokenizer.from_pretrained(folder)
    hf = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    model = build_model(model_cfg, tokenizer.vocab_size)
    state = {stlm_name(k): v for k, v in hf.state_dict().items() if "rotary_emb" not in k}
    if model_cfg.tie_embeddings:
        state["head.linear.weight"] = state["embedder.token.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"cannot import {folder}: weights missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.eval()
    diff = _logit_difference(model, hf, tokenizer)
    if not diff <= PARITY_TOLERANCE:
        raise UserError(f"imported {folder}, but its logits differ from transformers' by {diff:.2e} "
                        f"(> {PARITY_TOLERANCE}); the model uses a feature stlm's Llama lacks")

    tmp = out.with_name(f".tmp-import-{out.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / CHECKPOINTS_DIR).mkdir(parents=True)
    tokenizer.save(tmp / TOKENIZER_DIR)
    cfg = RunConfig(model=model_cfg, run_name=out.name, runs_dir=str(out.parent),
                    data=DataConfig(name="imported", tokenizer=TokenizerConfig(
                        kind="hf", vocab_size=tokenizer.vocab_size, path=str((out / TOKENIZER_DIR).resolve()))))
    write_config(tmp, cfg)
    meta = {"tokens": 0, "elapsed_s": 0.0, "val_loss": None, "total_steps": None,
            "tokenizer": tokenizer.fingerprint(), "imported_from": str(folder.resolve())}
    # an optimizer that has taken no step: the checkpoint carries no optimizer state
    save_checkpoint(tmp / CHECKPOINTS_DIR, 0, model, build_optimizer(model, cfg.train, torch.device("cpu")), meta)
    (tmp / IMPORT_FILE).write_text(json.dumps({
        "source": str(folder.resolve()), "architecture": (hf_cfg.architectures or ["LlamaForCausalLM"])[0],
        "parameters": sum(p.numel() for p in hf.parameters()), "max_logit_difference": diff,
        "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eot_id}, indent=1))
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out


@torch.no_grad()
def _logit_difference(model, hf, tokenizer) -> float:
    ids = tokenizer.encode(PARITY_TEXT)[: model.cfg.context_length]
    x = torch.tensor([ids])
    return (model(x).logits - hf(x).logits).abs().max().item()
