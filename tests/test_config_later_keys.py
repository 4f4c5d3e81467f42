"""Run directories written before a config key existed must still resume: every key added to the
schema since the first release is listed in `LATER_KEYS` (a saved config may lack those and only
those). This test fails when a new key is added to the schema without being listed there."""

import dataclasses
import typing

from stlm.config import schema
from stlm.config.loader import LATER_KEYS, incomplete_keys

# The keys of the first release's RunConfig (commit 040fde1), nested sections flattened.
FIRST_RELEASE_KEYS = frozenset({
    "data.cache_dir", "data.hub_timeout_s", "data.invalid_utf8", "data.max_train_tokens",
    "data.max_val_tokens", "data.name", "data.num_proc", "data.sampling", "data.shard_tokens",
    "data.sources", "data.stages", "data.tokenizer.kind", "data.tokenizer.path",
    "data.tokenizer.train_chars", "data.tokenizer.vocab_size", "data.val_fraction",
    "eval.batch_size", "eval.final_val_batches", "eval.limit", "eval.minimal_pairs",
    "eval.pairs_per_paradigm", "eval.pairs_seed", "eval.sample_prompt", "eval.sample_tokens",
    "eval.tasks", "model.attention", "model.bias", "model.context_length", "model.d_ff",
    "model.d_model", "model.dropout", "model.embedder", "model.ffn", "model.init_std",
    "model.n_heads", "model.n_kv_heads", "model.n_layers", "model.name", "model.norm",
    "model.norm_eps", "model.pad_vocab_to", "model.positions", "model.rope_theta",
    "model.rrhp_factor", "model.sharing.ffn", "model.sharing.groups",
    "model.sharing.interior_skip", "model.sharing.layers", "model.sharing.lora_alpha",
    "model.sharing.lora_rank", "model.tie_embeddings", "model.vocab_size", "resume", "run_name",
    "runs_dir", "seed", "train.batch_size", "train.beta1", "train.beta2", "train.checkpoint_every",
    "train.compile", "train.context_length", "train.device", "train.eps", "train.eval_batches",
    "train.eval_every", "train.grad_accum", "train.grad_clip", "train.keep_last",
    "train.log_every", "train.lr", "train.max_minutes", "train.max_steps", "train.max_tokens",
    "train.min_lr", "train.precision", "train.progress", "train.schedule", "train.threads",
    "train.warmup_steps", "train.weight_decay",
})


def schema_keys(cls=schema.RunConfig, prefix: str = "") -> set[str]:
    out = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            out |= schema_keys(hints[f.name], key + ".")
        else:
            out.add(key)
    return out


def _listed(key: str) -> bool:  # a listed section covers its keys
    return any(key == k or key.startswith(k + ".") for k in LATER_KEYS)


def test_every_key_added_since_the_first_release_may_be_missing_from_a_saved_config():
    added = sorted(k for k in schema_keys() - FIRST_RELEASE_KEYS if not _listed(k))
    assert added == [], f"add these keys to stlm.config.loader.LATER_KEYS: {added}"


def test_a_first_release_key_may_not_be_missing():
    saved = dataclasses.asdict(schema.RunConfig())
    del saved["train"]["lr"]
    assert incomplete_keys(saved) == ["train.lr (missing)"]
    for key in LATER_KEYS:  # and none of the later keys is one the first release already had
        assert key not in FIRST_RELEASE_KEYS, key
