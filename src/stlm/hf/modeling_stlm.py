"""Any stlm model as a transformers `PreTrainedModel` (the modeling file of a remote-code export).

`stlm export` copies this file into the export folder as `modeling_stlm.py`, with stlm's model
code beside it as flat modules (`stlm.hf.remote_code`), and names its classes in config.json's
`auto_map`: `AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` then builds
exactly the model stlm trained, in a Python without stlm.

- `StlmConfig` carries the run's `ModelConfig` as a dict (`stlm_model`) and the vocabulary size;
  `hidden_size`, `num_hidden_layers`, ... mirror it for tools that read them.
- `StlmForCausalLM` wraps `build_model`. Weights the model shares (tied embeddings, layers or
  FFNs shared across layers, the weights under per-layer LoRA adapters) are one tensor in the
  model; safetensors holds each once, and `get_expanded_tied_weights_keys` tells transformers
  which names are aliases of which, so none is reported missing or initialised afresh. Sharing
  itself is rebuilt by construction: the same module object in several layers, and the embedding
  tie re-made by `tie_weights`.
- Tables a component fills from the tokenizer (the byte embedder's id -> bytes table) are saved
  with the weights.
- `forward` returns `CausalLMOutputWithPast` (with `labels`, HF-style unshifted, the model's own
  training loss); `generate()` works, with transformers' key/value cache driving the model's own
  cache calls (`_CacheView`) and `logits_to_keep` sparing the prompt's logits. Padding is
  refused: the model attends to every earlier position.
- A head whose logits are already log-probabilities summing to at most 1 (the byte decoder: the
  rest is byte spellings that are no id) gets one more column, id `vocab_size`, holding
  log(1 - their sum) (`with_remainder`): a softmax then returns exactly the model's probabilities,
  so lm-eval scores what `stlm eval` scores. No tokenizer id is that column, and generation never
  picks it (`suppress_tokens`); greedy decoding takes the most probable id, where stlm's own
  generation spells a chunk byte by byte.
"""

from __future__ import annotations

import dataclasses
import re
import typing

import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from stlm.config.schema import ModelConfig
from stlm.models.model import build_model

IGNORE_INDEX = -100  # unscored label, as in transformers and stlm
# What transformers calls the key/value cache in model outputs and generation inputs
CACHE_FIELD = "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"


def dataclass_from_dict(cls, data: dict):
    """A (nested) dataclass from the dict `dataclasses.asdict` made of it; unknown keys fail."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}: config.json does not "
                         f"match the modeling code beside it; export the run again")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        args = typing.get_args(hint)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = dataclass_from_dict(hint, value)
        elif typing.get_origin(hint) is list and args and dataclasses.is_dataclass(args[0]):
            value = [dataclass_from_dict(args[0], v) for v in value]
        kwargs[name] = value
    return cls(**kwargs)


class StlmConfig(PretrainedConfig):
    model_type = "stlm"
    stlm_model: dict | None = None  # dataclasses.asdict(ModelConfig)
    vocab_size: int = 0
    hidden_size: int = 0
    num_hidden_layers: int = 0
    num_attention_heads: int = 0
    max_position_embeddings: int = 0
    use_cache: bool = True
    tie_word_embeddings: bool = False  # ties are the model's own (`aliases`), not transformers'

    def model_config(self) -> ModelConfig:
        return dataclass_from_dict(ModelConfig, dict(self.stlm_model or {}))


def stlm_config(cfg: ModelConfig, vocab_size: int, **kwargs) -> StlmConfig:
    """The transformers config of an stlm model of `vocab_size` rows."""
    return StlmConfig(stlm_model=dataclasses.asdict(cfg), vocab_size=vocab_size, hidden_size=cfg.d_model,
                      num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                      max_position_embeddings=cfg.context_length, **kwargs)


class _CacheView:
    """A transformers `Cache` seen through stlm's `KVCache` calls: the model's attention stores
    and reads keys and values with `update` and `layer_length`. What transformers' cache has no
    room for lives on it as attributes, so it persists from one `generate` step to the next: the
    number of positions seen (`stlm_length`; a routed or exited layer holds fewer keys than that)
    and the absolute position of each slot of a mixture-of-depths layer (`stlm_slot_positions`)."""

    def __init__(self, cache):
        self.cache = cache
        if not hasattr(cache, "stlm_length"):
            cache.stlm_length = cache.get_seq_length()
            cache.stlm_slot_positions = {}

    @property
    def length(self) -> int:
        return self.cache.stlm_length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.update(k, v, layer)

    def layer_length(self, layer: int) -> int:
        return self.cache.get_seq_length(layer)

    def record_positions(self, layer: int, positions: torch.Tensor) -> None:
        old = self.cache.stlm_slot_positions.get(layer)
        self.cache.stlm_slot_positions[layer] = positions if old is None else torch.cat([old, positions], dim=1)

    def past_mask(self, layer: int) -> torch.Tensor | None:
        pos = self.cache.stlm_slot_positions.get(layer)
        return None if pos is None else pos >= 0

    def advance(self, n: int) -> None:
        self.cache.stlm_length += n


def seen_positions(cache) -> int:
    """Positions a transformers cache driven by `_CacheView` has seen (0 for a fresh one)."""
    return getattr(cache, "stlm_length", None) or cache.get_seq_length()


def with_remainder(logprobs: torch.Tensor) -> torch.Tensor:
    """log-probabilities (..., V) summing to at most 1, with log(1 - their sum) appended (..., V + 1)
    (-inf where rounding makes the sum reach 1)."""
    total = logprobs.double().logsumexp(-1, keepdim=True)
    rest = torch.log((-torch.expm1(total)).clamp(min=0))
    return torch.cat([logprobs, rest.to(logprobs.dtype)], dim=-1)


def aliases(module: torch.nn.Module) -> dict[str, str]:
    """{state-dict name: the first name of the same tensor} for every tensor `module` shares."""
    first: dict[int, str] = {}
    out = {}
    for name, tensor in [*module.named_parameters(remove_duplicate=False),
                         *module.named_buffers(remove_duplicate=False)]:
        if id(tensor) in first:
            out[name] = first[id(tensor)]
        else:
            first[id(tensor)] = name
    keys = set(module.state_dict())
    return {k: v for k, v in out.items() if k in keys}


class StlmForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = StlmConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"

    def __init__(self, config: StlmConfig):
        super().__init__(config)
        with torch.device("cpu"):  # real tensors where transformers builds on "meta", so that
            self.model = build_model(config.model_config(), config.vocab_size)
        for module in self.model.modules():  # tokenizer tables travel with the weights
            if module is not self.model and hasattr(module, "attach"):
                for name, buffer in list(module.named_buffers(recurse=False)):
                    module.register_buffer(name, buffer, persistent=True)
        # ... buffers computed at construction and not saved (rotary tables, PWA's indices) can be
        # put back after loading: transformers empties them and asks `_init_weights` to refill them
        saved = set(self.model.state_dict())
        self._computed_buffers = {}
        for module_name, module in self.model.named_modules():
            for name, buffer in module.named_buffers(recurse=False):
                if f"{module_name}.{name}".lstrip(".") not in saved:
                    self._computed_buffers.setdefault(id(module), {})[name] = buffer.clone()
        alias_map = aliases(self)
        self._tied_weights_keys = {f"^{re.escape(k)}$": v for k, v in alias_map.items()}  # save: keep one
        self.post_init()
        if self.model.logits_are_logprobs:  # the remainder column is no token
            self.generation_config.suppress_tokens = [config.vocab_size]

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        """Every alias of a shared tensor -> its first name (transformers reads them on load)."""
        return aliases(self)

    @torch.no_grad()
    def _init_weights(self, module) -> None:
        """Only the computed buffers: `build_model` initialised the weights, loading overwrites them."""
        for name, value in self._computed_buffers.get(id(module), {}).items():
            module.register_buffer(name, value.to(getattr(module, name).device), persistent=False)

    def get_input_embeddings(self):
        return getattr(self.model.embedder, "token", None)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache=None, labels: torch.Tensor | None = None, use_cache: bool | None = None,
                past_key_values=None, logits_to_keep: int = 0, **kwargs) -> CausalLMOutputWithPast:
        """Logits (B, T, vocab) for input_ids (B, T), continuing the ids in `cache` (transformers
        >= 5.24's name; `past_key_values` before it), of the last `logits_to_keep` positions only
        when it is not 0; with `labels`, the training loss."""
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("stlm models attend to every earlier position and take no padding "
                             "(attention_mask must be all ones); run sequences of unequal length one by one")
        cache = cache if cache is not None else past_key_values
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache()
        view = _CacheView(cache) if use_cache else None
        if labels is None:
            out = self.model(input_ids, cache=view, logits="last" if logits_to_keep == 1 else "all")
            logits = out.logits[:, -logits_to_keep:] if logits_to_keep > 1 else out.logits
        else:
            if view is not None and view.length and not self.model.logits_in_training:
                raise ValueError("labels with a filled cache are not supported for this head (it computes "
                                 "no logits in training); pass the whole sequence without a cache")
            targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
            out = self.model(input_ids, targets, cache=view)
            logits = out.logits
            if logits is None:  # a head that computes none in training: a second pass, no cache
                logits = self.model(input_ids).logits
        if self.model.logits_are_logprobs:
            logits = with_remainder(logits)
        return CausalLMOutputWithPast(loss=out.loss, logits=logits, **{CACHE_FIELD: cache if use_cache else None})

    def prepare_inputs_for_generation(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                                      use_cache: bool = True, **kwargs) -> dict:
        """The ids the cache has not seen yet (all of them without a cache)."""
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if use_cache and cache is not None:
            input_ids = input_ids[:, seen_positions(cache):]
            attention_mask = None  # the cache holds the earlier positions
        return {"input_ids": input_ids, "attention_mask": attention_mask, CACHE_FIELD: cache, "use_cache": use_cache,
                "logits_to_keep": kwargs.get("logits_to_keep", 0)}

