"""The model card (README.md) written into every export: what the model is, what it was trained on,
for how long, and how it scored, all read from the run directory (config.yaml, the checkpoint's
metadata, summary.json, eval/*.json, import.json). Hub-style front matter makes the folder ready
to upload (Mitchell et al. 2019, "Model Cards for Model Reporting")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stlm.eval.output import load_results, results_table
from stlm.models.params import count_parameters
from stlm.runs import SUMMARY_FILE, LoadedRun


def _architecture(cfg) -> list[str]:
    kv = cfg.n_kv_heads or cfg.n_heads
    rows = [f"- embedder: {cfg.embedder}; positions: {cfg.positions}"
            + (f" (theta {cfg.rope_theta:g})" if cfg.positions == "rope" else ""),
            f"- core: {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} attention heads "
            f"({kv} key/value heads, {cfg.attention}), FFN {cfg.ffn} with d_ff {cfg.d_ff}, norm {cfg.norm}",
            f"- head: {cfg.head}, {'tied to the input embedding' if cfg.tie_embeddings else 'its own output projection'}; "
            f"context length {cfg.context_length} tokens"]
    s = cfg.sharing
    if s.ffn != "none" or s.layers != "none" or s.lora_rank:
        rows.append(f"- weight sharing: FFN {s.ffn}, layers {s.layers} ({s.groups} groups), LoRA rank {s.lora_rank}")
    return rows


def _data(cfg, tokenizer) -> list[str]:
    d = cfg.data
    sources = d.sources if not d.stages else [s for stage in d.stages for s in stage.sources]
    names = [s.hub_id or s.path or s.name for s in sources]
    return [f"- data: `{d.name}` ({', '.join(f'`{n}`' for n in names)})",
            f"- tokenizer: {tokenizer.kind}, {tokenizer.vocab_size:,} ids"]


def model_card(loaded: LoadedRun, meta: dict[str, Any], repo_name: str, remote_code: bool = False) -> str:
    """Markdown of the card for the checkpoint `loaded` (its metadata `meta`)."""
    cfg, run_dir = loaded.cfg, loaded.run_dir
    params = count_parameters(loaded.model, flops=False)
    summary = json.loads((run_dir / SUMMARY_FILE).read_text()) if (run_dir / SUMMARY_FILE).is_file() else {}
    imported = json.loads((run_dir / "import.json").read_text()) if (run_dir / "import.json").is_file() else None
    lines = ["---", "library_name: transformers", "pipeline_tag: text-generation",
             "tags: [stlm, tiny-language-model]", "---", "", f"# {repo_name}", "",
             f"A {params.total:,}-parameter language model ({params.non_embedding:,} without embeddings) "
             f"made with stlm from the run `{run_dir.name}`, "
             f"checkpoint `{loaded.checkpoint.name}`.", "", "## Architecture", "",
             f"`{cfg.model.name}`: embedder -> core -> head.", *_architecture(cfg.model), "",
             "Parameters by component: " + ", ".join(f"{k} {v:,}" for k, v in params.by_component.items() if v) + ".",
             "", "## Training", ""]
    if imported:
        lines += [f"Imported from `{imported['source']}` ({imported['architecture']}); logits matched "
                  f"transformers' within {imported['max_logit_difference']:.1e}."]
    tokens = meta.get("tokens", summary.get("tokens", 0))
    lines += [*_data(cfg, loaded.tokenizer), f"- tokens seen: {tokens:,} in {loaded.step:,} steps "
              f"(batch {cfg.train.batch_size} x {cfg.train.grad_accum} accumulation, lr {cfg.train.lr:g} "
              f"{cfg.train.schedule}, seed {cfg.seed})"]
    if summary.get("val_loss") is not None:
        lines.append(f"- final validation: loss {summary['val_loss']:.4f} nats/token, "
                     f"{summary['val_bpb']:.4f} bits per byte")
    if meta.get("val_loss") is not None:
        lines.append(f"- this checkpoint's validation loss: {meta['val_loss']:.4f}")
    results = load_results(run_dir)
    lines += ["", "## Evaluation", ""]
    if results:
        lines += ["Zero-shot, scored as lm-evaluation-harness scores them (`stlm eval`):", "",
                  results_table(results)]
    else:
        lines.append("No evaluation yet: run `stlm eval RUN --tasks ...` before exporting to include it.")
    trust = ", trust_remote_code=True" if remote_code else ""
    lines += ["", "## Use", ""]
    if remote_code:
        lines += ["The model's code (stlm's, copied into this folder: `modeling_stlm.py` and the "
                  "`stlm_*.py` modules) runs with `trust_remote_code=True`; stlm need not be installed.", ""]
    if loaded.model.logits_are_logprobs:
        lines += [f"The head spells each next token byte by byte, so its logits are log p(the id's bytes, end of "
                  f"chunk): one byte-decoder pass per id and position (cheap for a small vocabulary, slow on a CPU "
                  f"for GPT-2's). The extra last column, id {loaded.model.vocab_size}, is no token: it holds the "
                  f"probability of byte spellings that are no id, so a softmax gives the model's probabilities "
                  f"unchanged, and generation never picks it (`suppress_tokens`).", ""]
    lines += ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
              f'model = AutoModelForCausalLM.from_pretrained("{repo_name}"{trust})',
              f'tokenizer = AutoTokenizer.from_pretrained("{repo_name}"{trust})', "```", ""]
    return "\n".join(lines)


def write_model_card(folder: Path, loaded: LoadedRun, meta: dict[str, Any], repo_name: str,
                     remote_code: bool = False) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(model_card(loaded, meta, repo_name, remote_code), encoding="utf-8")
    return path
