"""Typed configuration schema: the single source of truth for every default.

Hydra composes the YAML files under ``stlm/config/conf`` on top of these dataclasses, so an
unknown key or a value of the wrong type is rejected before anything runs. A YAML preset only
states what differs from the defaults here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

POSITIONS = ("rope", "learned", "sincos", "none")
FFN_SHARING = ("none", "all", "interior")
LAYER_SHARING = ("none", "groups")


@dataclass
class SharingConfig:
    """Weight sharing across layers (ALBERT, MobiLlama, SLlama). Norms always stay per layer."""

    # FFN sharing: "all" layers use one FFN; "interior" shares it across layers
    # [interior_skip, n_layers - interior_skip) and keeps the outer layers unique.
    ffn: str = "none"
    interior_skip: int = 1
    # Attention + FFN (whole-block) sharing in `groups` contiguous groups of layers
    # (groups=1: every layer shares one block, as in SLlama's released model).
    layers: str = "none"
    groups: int = 1
    # LoRA adapters of this rank on every shared linear weight, one per layer (0 = off).
    lora_rank: int = 0
    lora_alpha: float = 1.0


ROUTERS = ("aux_loss", "predictor")


@dataclass
class MoDConfig:
    """Mixture-of-depths (Raposo et al., 2024): routed blocks process only a fraction of the
    tokens; the rest pass along the residual stream (stlm.models.components.mixture_of_depths)."""

    # Fraction of tokens each routed block processes, in (0, 1]; 1.0 = off (every block dense).
    capacity: float = 1.0
    # Route every `every`-th block (layers every-1, 2*every-1, ...); the paper routes every other.
    every: int = 2
    # One capacity per layer (1.0 = dense), overriding `capacity` and `every` when non-empty.
    per_layer: List[float] = field(default_factory=list)
    # How inference decides causally: "aux_loss" (router logit > 0, trained by a BCE loss towards
    # the top-k choice) or "predictor" (a small MLP on stop-gradient states predicts the choice).
    router: str = "aux_loss"
    aux_weight: float = 0.1  # weight of each routed block's BCE loss (`aux.mod_<layer>`)


@dataclass
class CompressionStep:
    """One `stlm compress` application, recorded in the compressed run's config."""

    method: str = ""  # magnitude | nm | heads | neurons | drop-layers | int8 | int4 | svd
    source: str = ""  # the run directory and checkpoint it was applied to
    settings: Dict[str, Any] = field(default_factory=dict)  # the method's options, as used


@dataclass
class CompressionConfig:
    """The structure `stlm compress` gave a trained model, enough to rebuild it from config alone
    (`stlm.compress.structure` applies it after construction, before the weights load), and the
    steps that produced it. All empty: an ordinary, uncompressed model."""

    heads: List[int] = field(default_factory=list)  # query heads per layer ([]: n_heads in each)
    kv_heads: List[int] = field(default_factory=list)  # key/value heads per layer ([]: n_kv_heads)
    d_ff: List[int] = field(default_factory=list)  # FFN width per layer ([]: d_ff in each)
    low_rank: Dict[str, int] = field(default_factory=dict)  # linear layer -> rank r of W = B A
    quant_bits: int = 0  # 0: float weights; 8: int8 per output channel; 4: int4 per group
    quant_group: int = 0  # int4: input columns sharing one scale
    quantized: List[str] = field(default_factory=list)  # linear layers stored quantised
    steps: List[CompressionStep] = field(default_factory=list)  # in the order applied

    @property
    def is_empty(self) -> bool:
        return not (self.heads or self.kv_heads or self.d_ff or self.low_rank or self.quantized
                    or self.steps)


@dataclass
class ModelConfig:
    """Shape and components of an embedder -> core -> head language model."""

    name: str = "custom"
    # None: take the tokenizer's vocabulary size (padded to `pad_vocab_to`).
    vocab_size: Optional[int] = None
    pad_vocab_to: int = 1
    context_length: int = 256
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 8
    n_kv_heads: Optional[int] = None  # None = n_heads (plain multi-head attention)
    d_ff: int = 688
    embedder: str = "token"  # token | rrhp (SLlama's repeated reduced hidden size) | byte_pooled
    rrhp_factor: int = 4
    positions: str = "rope"  # rope | learned | sincos | none
    rope_theta: float = 10000.0
    norm: str = "rmsnorm"  # rmsnorm | layernorm
    norm_eps: float = 1e-6
    attention: str = "gqa"  # gqa | pwa (SLlama's permutated weight attention)
    ffn: str = "swiglu"  # swiglu | gelu | relu2 | spmlp (SLlama's shared projection MLP)
    head: str = "token"  # token | multi_token (Gloeckle et al., 2024) | early_exit | byte_decoder
    mtp_tokens: int = 4  # head=multi_token: tokens predicted per position (next + mtp_tokens - 1)
    mtp_weight: float = 1.0  # head=multi_token: weight of each extra head's auxiliary loss
    # LayerSkip (Elhoushi et al., 2024): per-sample layer dropout rising with depth to this rate at
    # the last layer (training only), and with head=early_exit a loss at every layer's exit.
    layer_dropout: float = 0.0
    early_exit_scale: float = 1.0  # head=early_exit: total weight of the early-exit losses
    # head=early_exit: which exits are trained at a step (LayerSkip's curriculum): none (all, every
    # step) | rotational (every `early_exit_rotation`-th layer, rotating by one layer each step) |
    # gradual (exits switched on from the last layer down, all on after `early_exit_ramp` of training)
    early_exit_curriculum: str = "none"
    early_exit_rotation: int = 2
    early_exit_ramp: float = 0.5
    # Pause tokens (Goyal et al., 2023): K > 0 gives the model a learnable pause embedding; training
    # inserts pauses at random positions (`pause_fraction` of each window's positions, no loss on
    # predicting them) and generation and scoring append K pauses after the prompt / before each
    # continuation.
    pause_tokens: int = 0
    pause_fraction: float = 0.1
    # embedder=byte_pooled / head=byte_decoder (STLM's byte-level model): width, layers and heads
    # of the small byte transformers, the longest chunk in bytes, and the embedder's pooling.
    byte_dim: int = 64
    byte_layers: int = 2
    byte_decoder_layers: int = 2
    byte_heads: int = 4
    byte_chunk_max: int = 16
    byte_pool: str = "mean"  # mean (over real bytes) | query (one learned attention query)
    bias: bool = False
    dropout: float = 0.0
    tie_embeddings: bool = False
    init_std: float = 0.02
    # Modern-architecture switches (modded-nanogpt speed-run records; docs/training_knobs.md)
    qk_norm: bool = False  # RMSNorm on each head's queries and keys, before RoPE
    zero_init_projections: bool = False  # attention o_proj and FFN down projections start at 0
    logit_softcap: Optional[float] = None  # head logits become cap * tanh(logits / cap); None: off
    sharing: SharingConfig = field(default_factory=SharingConfig)
    mod: MoDConfig = field(default_factory=MoDConfig)  # mixture-of-depths routing (off by default)
    compression: CompressionConfig = field(default_factory=CompressionConfig)  # `stlm compress`

    @property
    def kv_heads(self) -> int:
        """Key/value heads: `n_kv_heads`, or `n_heads` when unset (multi-head attention)."""
        return self.n_kv_heads or self.n_heads


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


@dataclass
class TokenizerConfig:
    """Which tokenizer turns text into ids."""

    kind: str = "bpe"  # byte | bpe | gpt2 | hf (an imported model's tokenizer.json, needs `path`)
    vocab_size: int = 1024  # bpe only: size of the trained vocabulary, specials included
    train_chars: int = 20_000_000  # bpe only: characters of training text used to learn merges
    # gpt2: path to r50k_base.tiktoken (or a folder holding it); bpe: an existing tokenizer.json;
    # hf: a saved HF tokenizer folder (an imported run's tokenizer/)
    path: Optional[str] = None
    # Split tokens longer than this many bytes into several (byte-level chunking; None: never).
    max_chunk_bytes: Optional[int] = None


@dataclass
class SourceConfig:
    """One text source. `name` picks the loader; the other fields are its options."""

    name: str = "grammar"
    weight: float = 1.0
    path: Optional[str] = None  # local file/folder (text) or local copy of a hub corpus
    hub_id: Optional[str] = None  # override the hub dataset id
    hub_config: Optional[str] = None
    text_field: str = "text"
    seed: int = 0  # grammar only: generator seed
    max_documents: Optional[int] = None  # cap on documents read from this source


@dataclass
class StageConfig:
    """A curriculum stage: train on `sources` for `tokens` tokens, then move on."""

    tokens: int = 0
    sources: List[SourceConfig] = field(default_factory=list)


@dataclass
class DataConfig:
    """A corpus: sources (mixed by weight, or ordered in stages), its tokenizer and splits."""

    name: str = "grammar"
    # Shorthand for the one source's path in `data=text` (its preset reads `${data.path}`):
    # `stlm train data=text data.path=FILE` is `data.sources.0.path=FILE`.
    path: Optional[str] = None
    sources: List[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    stages: List[StageConfig] = field(default_factory=list)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    # Validation split: the source's own, or this deterministic fraction of its documents.
    val_fraction: float = 0.01
    max_train_tokens: Optional[int] = None  # stop preparing once the train split has this many
    max_val_tokens: Optional[int] = 1_000_000
    invalid_utf8: str = "replace"  # replace (and count) | fail
    num_proc: int = 2
    shard_tokens: int = 32 * 1024 * 1024  # tokens per shard file: the unit a killed prepare resumes from
    cache_dir: str = ".stlm_cache"
    hub_timeout_s: float = 10.0
    sampling: str = "random"  # random windows | sequential pass


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclass
class ProgressScheduleConfig:
    """How a value follows training progress (stlm.train.dropout): every dropout rate of the model
    (peak `model.dropout`) or the distillation weight (peak `train.distill.weight`); `start`/`end`
    are fractions of the training budget."""

    shape: str = "constant"  # constant | early | late | linear_up | linear_down | triangular | cosine_down
    start: float = 0.0  # late: switch-on point; ramps and triangular: where they begin
    end: float = 1.0  # early: switch-off point; ramps and triangular: where they end


@dataclass
class MuonConfig:
    """train.optimizer=muon: Muon for the core's matrices (stlm.train.optim.muon), AdamW at train.lr for
    the rest. The Muon rate follows the same schedule shape, scaled by lr / train.lr."""

    lr: float = 0.02  # peak rate of the core's 2-D matrices
    momentum: float = 0.95
    nesterov: bool = True
    ns_steps: int = 5  # Newton-Schulz iterations
    weight_decay: float = 0.0  # decoupled, on the Muon matrices (AdamW groups use train.weight_decay)


@dataclass
class DistillConfig:
    """train.loss=distill: match a teacher's next-token distribution (stlm.train.distill): an stlm
    run or a local transformers causal-LM folder with the same tokenizer (stlm.train.teacher)."""

    teacher: Optional[str] = None  # stlm run directory (its last checkpoint) or a transformers folder
    weight: float = 0.5  # loss = (1 - w) * label loss + w * T^2 KL; w = weight shaped by `schedule`
    schedule: ProgressScheduleConfig = field(default_factory=ProgressScheduleConfig)
    temperature: float = 2.0
    direction: str = "forward"  # forward: KL(teacher || student) | reverse: KL(student || teacher)
    top_k: Optional[int] = None  # None: the full vocabulary; K: the teacher's top K ids (renormalised)
    # A folder of the teacher's top-k log-probs for the windows this run trains on (needs top_k),
    # built on first use and reused by later runs on the same data (stlm.train.distill_cache)
    cache: Optional[str] = None


@dataclass
class TrainConfig:
    """Optimiser, schedule, budget and cadence of a training run."""

    batch_size: int = 32  # sequences per micro-batch (per rank)
    grad_accum: int = 1
    context_length: Optional[int] = None  # None = model.context_length
    max_steps: Optional[int] = 1000
    max_tokens: Optional[int] = None  # budget alternatives; the smallest one wins
    max_minutes: Optional[float] = None
    optimizer: str = "adamw"  # a registered optimizer builder (stlm.train.optim): adamw | muon
    muon: MuonConfig = field(default_factory=MuonConfig)
    loss: str = "lm"  # a registered training objective (stlm.train.losses): lm | distill
    distill: DistillConfig = field(default_factory=DistillConfig)
    lr: float = 3e-3
    min_lr: float = 3e-4
    schedule: str = "cosine"  # cosine | linear | wsd | constant | inverse_sqrt (stlm.train.schedule)
    # Resuming with a larger budget: "restart" plans the schedule over the new total (the rate
    # rises again after a finished run); "extend" keeps the saved plan and holds min_lr beyond it.
    continue_schedule: str = "restart"
    warmup_steps: int = 50
    cooldown_fraction: float = 0.2  # wsd: share of the post-warmup steps spent cooling down
    cooldown_shape: str = "linear"  # wsd: linear | cosine | 1-sqrt
    dropout_schedule: ProgressScheduleConfig = field(default_factory=ProgressScheduleConfig)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    # Stop when the training (or validation) loss exceeds this multiple of the run's first training
    # loss: a blow-up that stays finite. Such a checkpoint is never marked best. None: no check.
    diverge_factor: Optional[float] = 3.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16
    compile: Optional[bool] = None  # None: on CUDA for long runs only (stlm.train.setup.should_compile)
    # Under torchrun: ddp (every rank holds the whole model) | fsdp (FSDP2 fully_shard: parameters,
    # gradients and optimizer state sharded over ranks); one process ignores it (docs/distributed.md)
    parallel: str = "ddp"
    threads: Optional[int] = None  # torch CPU threads (None: torch default)
    eval_every: int = 250
    eval_batches: int = 20
    log_every: int = 10
    checkpoint_every: int = 250
    keep_last: int = 2
    progress: bool = True
    # Experiment tracking beside metrics.jsonl (stlm.train.tracking): none | wandb | tensorboard
    tracker: str = "none"
    tracker_project: str = "stlm"  # wandb: the project the run is logged to
    # BabyLM submission checkpoints (stlm.train.babylm): chck_{N}M at 1M..10M words, then every
    # 10M to 100M; `babylm_words_per_m` words make one "M" (keep 1,000,000 for a submission)
    babylm_checkpoints: bool = False
    babylm_words_per_m: int = 1_000_000


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@dataclass
class EvalConfig:
    """What runs during and after training."""

    minimal_pairs: bool = True  # built-in grammar minimal pairs (grammar corpus only)
    pairs_per_paradigm: int = 200
    pairs_seed: int = 10_007  # disjoint from every training seed by construction
    batch_size: int = 64
    final_val_batches: Optional[int] = None  # None: the whole validation split
    sample_prompt: str = "Once upon a time"
    sample_tokens: int = 48
    tasks: List[str] = field(default_factory=list)  # zero-shot tasks after training
    limit: Optional[int] = None


# ---------------------------------------------------------------------------------------------
# A run
# ---------------------------------------------------------------------------------------------


@dataclass
class RunConfig:
    """Everything a run needs; saved resolved as `config.yaml` in the run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run_name: Optional[str] = None
    runs_dir: str = "runs"
    seed: int = 1337
    resume: Optional[str] = None  # path of a run directory to continue
    # path of a run directory whose best weights start this new run (fine-tuning, e.g. an import
    # from `stlm import`); its model config and tokenizer replace the composed ones
    init_from: Optional[str] = None


def trained_context(cfg: RunConfig) -> int:
    """The window length the run trains on: `train.context_length`, else the model's context."""
    t = cfg.train.context_length
    return t if t is not None else cfg.model.context_length
