"""Write a trained run as a Hugging Face model folder that `AutoModelForCausalLM` loads with no
custom code: a plain-Llama run becomes `LlamaForCausalLM` (config.json + model.safetensors).

The tokenizer goes beside it: a trained BPE as `tokenizer.json` for `PreTrainedTokenizerFast`;
GPT-2 runs use the standard `gpt2` tokenizer (the same ids); every run also keeps stlm's own
tokenizer files under `stlm_tokenizer/`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stlm.errors import UserError
from stlm.hf.llama import check_llama_compatible, to_hf_llama


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
    hf.config.eos_token_id = loaded.tokenizer.eot_id
    hf.config.bos_token_id = loaded.tokenizer.eot_id
    hf.save_pretrained(tmp)
    loaded.tokenizer.save(tmp / "stlm_tokenizer")
    if loaded.tokenizer.kind == "bpe":
        from transformers import PreTrainedTokenizerFast

        fast = PreTrainedTokenizerFast(tokenizer_file=str(tmp / "stlm_tokenizer" / "tokenizer.json"),
                                       eos_token="<|endoftext|>", bos_token="<|endoftext|>")
        fast.save_pretrained(tmp)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out
