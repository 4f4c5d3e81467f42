"""Write a trained run as a Hugging Face model folder that `AutoModelForCausalLM` loads.

A plain-Llama run becomes `LlamaForCausalLM` (config.json + model.safetensors), loadable with no
custom code. Every other architecture (weight sharing, LoRA, SLlama's parts, GPT-2-style parts,
multi-token and early-exit heads, the byte-level model, ...) becomes a remote-code folder: `StlmForCausalLM`
(`stlm.hf.modeling_stlm`) with stlm's model code copied beside it (`stlm.hf.remote_code`) and
`auto_map` in config.json, loadable with `trust_remote_code=True` where stlm is not installed.
What no transformers causal LM can express is refused with the reason (`check_exportable`).

The tokenizer goes beside it, loadable with `AutoTokenizer` (`stlm.hf.tokenizer`): a trained BPE
(or an imported model's tokenizer) as `tokenizer.json`, GPT-2 runs as GPT-2's vocab.json /
merges.txt rebuilt from the run's tiktoken file; every run also keeps stlm's own tokenizer files
under `stlm_tokenizer/`. The folder is written under a temporary name and renamed when complete;
its parent is checked to be writable before the run is loaded. A model card (README.md) from
the run's config, training and evaluation results goes with it (`stlm.hf.model_card`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from stlm.errors import UserError
from stlm.hf.llama import is_plain_llama, to_hf_llama
from stlm.hf.model_card import write_model_card
from stlm.hf.remote_code import to_hf_remote, write_sources
from stlm.hf.tokenizer import save_hf_tokenizer
from stlm.output_paths import writable_folder
from stlm.train.checkpoint import load_weights, read_meta


def export_run(run_dir: str | Path, out_dir: str | Path, which: str = "best", babylm: bool = False) -> Path:
    """Write the run's checkpoint `which` to `out_dir`; with `babylm`, `out_dir/main` holds it and
    `out_dir/chck_{N}M` each BabyLM checkpoint (`stlm.train.babylm`), one HF branch each."""
    from stlm.runs import load_run

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder; choose a new folder")
    writable_folder(out.parent, "the exported model", "choose a writable place for the output folder")
    loaded = load_run(run_dir, which=which, device="cpu")
    check_exportable(loaded.model, loaded.tokenizer)
    tmp = out.with_name(out.name + ".tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_all(loaded, tmp, out, babylm)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot write the exported model to {out} ({exc.strerror or exc}); nothing was "
                        f"left behind; free space or choose another folder, then rerun") from None
    return out


def check_exportable(model, tokenizer) -> None:
    """Refuse, saying why, a model or tokenizer that no transformers folder can express."""
    c = model.cfg.compression
    if c.heads or c.d_ff or c.low_rank or c.quantized:
        raise UserError("this run was compressed into per-layer widths, factorised or quantised layers "
                        "(model.compression), which the exported model cannot rebuild; magnitude, nm and "
                        "drop-layers outputs export, or export the run before that step")
    if getattr(tokenizer, "split", None):
        raise UserError(f"the run's tokenizer splits tokens longer than {tokenizer.max_chunk_bytes} bytes "
                        "(data.tokenizer.max_chunk_bytes), which a transformers tokenizer cannot express; "
                        "only runs whose tokenizer splits no token export (train with "
                        "data.tokenizer.max_chunk_bytes=null and model.byte_chunk_max at least the "
                        "tokenizer's longest token)")


def _write_all(loaded, tmp: Path, out: Path, babylm: bool) -> None:
    from stlm.train.babylm import META_FILE, babylm_checkpoints

    if not babylm:
        _write_folder(loaded, read_meta(loaded.checkpoint), tmp, out.name)
    else:
        revisions = babylm_checkpoints(loaded.run_dir)
        if not revisions:
            raise UserError(f"{loaded.run_dir} has no BabyLM checkpoints (babylm/chck_*M); train it with "
                            f"train.babylm_checkpoints=true")
        _write_folder(loaded, read_meta(loaded.checkpoint), tmp / "main", out.name)
        for folder in revisions:
            meta = json.loads((folder / META_FILE).read_text())
            load_weights(loaded.model, folder)
            at = dataclasses.replace(loaded, checkpoint=folder, step=meta["step"])
            _write_folder(at, meta, tmp / folder.name, f"{out.name} ({folder.name})")
    if out.exists():
        out.rmdir()
    tmp.rename(out)


def _write_folder(loaded, meta: dict, folder: Path, name: str) -> None:
    """One transformers model folder: weights, config, (modeling code,) tokenizer and model card."""
    remote = not is_plain_llama(loaded.model.cfg)
    hf = to_hf_remote(loaded.model) if remote else to_hf_llama(loaded.model)
    tok = loaded.tokenizer
    bos = tok.bos_id if tok.bos_id is not None else tok.eot_id
    hf.config.eos_token_id, hf.config.bos_token_id = tok.eot_id, bos
    hf.save_pretrained(folder)
    if remote:
        write_sources(folder)
    tok.save(folder / "stlm_tokenizer")
    save_hf_tokenizer(tok, folder / "stlm_tokenizer", folder)
    write_model_card(folder, loaded, meta, name, remote_code=remote)
