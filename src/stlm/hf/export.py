"""Write a trained run as a Hugging Face model folder that `AutoModelForCausalLM` loads with no
custom code: a plain-Llama run becomes `LlamaForCausalLM` (config.json + model.safetensors).

The tokenizer goes beside it: a trained BPE (or an imported model's tokenizer) as `tokenizer.json`
for `PreTrainedTokenizerFast`; GPT-2 runs use the standard `gpt2` tokenizer (the same ids); every
run also keeps stlm's own tokenizer files under `stlm_tokenizer/`. A model card (README.md) from
the run's config, training and evaluation results goes with it (`stlm.hf.model_card`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stlm.errors import UserError
from stlm.hf.llama import check_llama_compatible, to_hf_llama
from stlm.hf.model_card import write_model_card
from stlm.train.checkpoint import read_meta


def export_run(run_dir: str | Path, out_dir: str | Path, which: str = "best") -> Path:
    from stlm.runs import load_run

    loaded = load_run(run_dir, which=which, device="cpu")
    try:
        check_llama_compatible(loaded.model.cfg)
    except ValueError as e:
        raise UserError(f"{e}; only plain-Llama runs export to transformers without custom code") from e
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; choose a new folder")
    tmp = out.with_name(out.name + ".tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    hf = to_hf_llama(loaded.model)
    tok = loaded.tokenizer
    bos = tok.bos_id if tok.bos_id is not None else tok.eot_id
    hf.config.eos_token_id, hf.config.bos_token_id = tok.eot_id, bos
    hf.save_pretrained(tmp)
    tok.save(tmp / "stlm_tokenizer")
    if tok.kind in ("bpe", "hf"):
        from tokenizers import Tokenizer as RustTokenizer
        from transformers import PreTrainedTokenizerFast

        rust = RustTokenizer.from_file(str(tmp / "stlm_tokenizer" / "tokenizer.json"))
        fast = PreTrainedTokenizerFast(tokenizer_object=rust, eos_token=rust.id_to_token(tok.eot_id),
                                       bos_token=rust.id_to_token(bos))
        fast.save_pretrained(tmp)
    write_model_card(tmp, loaded, read_meta(loaded.checkpoint), out.name)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out
