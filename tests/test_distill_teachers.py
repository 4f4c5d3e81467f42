"""Distillation teachers and targets: the top-k KL definition, the scheduled weight, a transformers
teacher (an `stlm export` of the student's copy gives zero KL, like the run itself; a random Llama
with the run's tokenizer teaches; another tokenizer is refused), and the top-k disk cache (a cached
run equals an on-the-fly run, resumed too; a corrupt, foreign or half-built cache is never used)."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from stlm.config import compose_config
from stlm.config.loader import ConfigError
from stlm.config.schema import ModelConfig, ProgressScheduleConfig
from stlm.errors import UserError
from stlm.train.distill import distillation_kl, teacher_topk, topk_distillation_kl


def logits(seed: int, shape=(2, 5, 7)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_topk_over_the_whole_vocabulary_is_the_full_kl(direction):
    s, t = logits(0), logits(1)
    full = distillation_kl(s, t, 2.0, direction)
    assert topk_distillation_kl(s, *teacher_topk(t, 7), 2.0, direction).item() == pytest.approx(full.item(), rel=1e-5)


def test_topk_kl_is_the_renormalised_teacher_against_the_full_student_at_any_temperature():
    s, t = logits(2, (1, 1, 6)), logits(3, (1, 1, 6))
    values, ids = teacher_topk(t, 3)  # log-probs at T=1: the cache stores these, whatever T is
    for T in (1.0, 2.5):
        top = t.flatten()[ids.flatten()] / T  # the raw logits of the top 3, at T
        p = F.softmax(top, -1)
        log_q = F.log_softmax(s.flatten() / T, -1)[ids.flatten()]
        want = (p * (p.log() - log_q)).sum() * T * T
        got = topk_distillation_kl(s, values, ids, T, "forward")
        assert got.item() == pytest.approx(want.item(), rel=1e-5)
    # a copy of the teacher still pays for the mass outside the teacher's top k: -log(sum of it)
    copy_kl = topk_distillation_kl(t, values, ids, 1.0, "forward").item()
    assert copy_kl == pytest.approx(-math.log(values.exp().sum().item()), rel=1e-5) and copy_kl > 0
    assert topk_distillation_kl(t, values, ids, 1.0, "reverse").item() == pytest.approx(0.0, abs=1e-6)


def tiny_student():
    from stlm.models import build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(vocab_size=50, context_length=16, d_model=32, n_layers=2, n_heads=2,
                                   d_ff=64)).train()


@pytest.mark.parametrize("shape, start, end, expected", [
    ("constant", 0.0, 1.0, {0.0: 0.6, 0.5: 0.6, 1.0: 0.6}),
    ("linear_up", 0.2, 0.6, {0.0: 0.0, 0.2: 0.0, 0.4: 0.3, 0.6: 0.6, 1.0: 0.6}),
    ("linear_down", 0.0, 0.5, {0.0: 0.6, 0.25: 0.3, 0.5: 0.0, 1.0: 0.0}),
    ("cosine_down", 0.5, 1.0, {0.0: 0.6, 0.5: 0.6, 0.75: 0.3, 1.0: 0.0}),
    ("early", 0.0, 0.5, {0.0: 0.6, 0.49: 0.6, 0.5: 0.0}),
])
def test_the_distillation_weight_follows_its_schedule(shape, start, end, expected):
    from stlm.train.losses import DistillationLoss

    student = tiny_student()
    teacher = tiny_student()
    with torch.no_grad():
        teacher.head.linear.weight.mul_(3)  # a teacher that differs
    loss_fn = DistillationLoss(student, teacher, 0.6, 2.0, "forward",
                               schedule=ProgressScheduleConfig(shape=shape, start=start, end=end))
    x, y = torch.randint(0, 50, (2, 16)), torch.randint(0, 50, (2, 16))
    for progress, w in expected.items():
        loss_fn.set_progress(progress)
        loss, lm, aux = loss_fn(x, y)
        assert aux["distill_weight"].item() == pytest.approx(w, abs=1e-6), progress
        assert loss.item() == pytest.approx((1 - w) * lm.item() + w * aux["distill_kl"].item(), rel=1e-5)


@pytest.mark.parametrize("override, message", [
    (["train.distill.schedule.shape=cyclic"], "bad value 'cyclic' for 'train.distill.schedule.shape'"),
    (["train.distill.schedule.start=0.8", "train.distill.schedule.end=0.5"],
     "need 0 <= train.distill.schedule.start <= train.distill.schedule.end <= 1, got start=0.8, end=0.5"),
    (["train.distill.cache=somewhere"], "train.distill.cache stores the teacher's top-k log-probs: set "
                                        "train.distill.top_k"),
    (["train.distill.top_k=0"], "train.distill.top_k must be >= 1, got 0"),
])
def test_bad_distillation_settings_are_refused(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        compose_config(override)


def test_a_student_without_training_logits_is_refused_before_any_teacher_loads():
    """The byte decoder computes no logits over the vocabulary in training (one decoder pass per
    id and position), which distillation matches: refused by name, not a shape error mid-run."""
    from stlm.models import build_model
    from stlm.train.losses import build_distillation_loss

    cfg = compose_config(["model=byte_pooled", "train.loss=distill", "train.distill.teacher=runs/none",
                          "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=null",
                          "model.d_ff=64", "model.vocab_size=300"])
    student = build_model(cfg.model)

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher must not be loaded")

    with pytest.raises(UserError, match="model.head=byte_decoder computes no logits over the vocabulary in training"):
        build_distillation_loss(student, cfg, torch.device("cpu"), None, load_run=no_teacher)


# ---------------------------------------------------------------------------------------------
# End to end: a BPE teacher run, its export, students
# ---------------------------------------------------------------------------------------------

BPE = ["data.tokenizer.kind=bpe", "data.tokenizer.vocab_size=300", "data.tokenizer.train_chars=200000"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A 10-step BPE run (one checkpoint, so its best is its last) and its `stlm export` folder."""
    pytest.importorskip("transformers")
    from test_train_loop import tiny_overrides

    from stlm.cli import main
    from stlm.train import run_training

    root = tmp_path_factory.mktemp("distill")
    run_training(compose_config(tiny_overrides(root, "teacher", *BPE, "train.max_steps=10")), echo=lambda s: None)
    run = root / "runs" / "teacher"
    assert main(["export", str(run), str(root / "hf")]) == 0
    return root, run, root / "hf"


def student(root, name, *extra):
    """Train a 4-step student on the teacher's data; its metrics records."""
    from test_train_loop import tiny_overrides

    from stlm.train import run_training
    from stlm.train.metrics import read_metrics

    run_training(compose_config(tiny_overrides(root, name, *BPE, "train.max_steps=4", "train.loss=distill",
                                               "train.eval_every=2", "train.checkpoint_every=2", *extra)),
                 echo=lambda s: None)
    return read_metrics(root / "runs" / name / "metrics.jsonl")


def trajectory(records, key="objective"):
    return [r[key] for r in records if key in r]


@pytest.mark.slow
def test_an_exported_copy_of_the_student_teaches_zero_kl_like_the_run_itself(teacher):
    root, run, hf = teacher
    copy = [f"init_from={run}", "train.distill.weight=0.5"]
    from_run = student(root, "copy_of_run", *copy, f"train.distill.teacher={run}")
    from_hf = student(root, "copy_of_hf", *copy, f"train.distill.teacher={hf}")
    assert from_run[0]["aux.distill_kl"] == pytest.approx(0.0, abs=1e-6)  # step 1: before any update
    assert from_hf[0]["aux.distill_kl"] == pytest.approx(0.0, abs=1e-6)
    assert trajectory(from_hf) == pytest.approx(trajectory(from_run), rel=1e-4)
    assert max(trajectory(from_hf, "aux.distill_kl")) > 1e-5  # the student then moves away


@pytest.mark.slow
def test_a_random_llama_with_the_runs_tokenizer_teaches_and_another_tokenizer_is_refused(teacher, tmp_path):
    import transformers

    from stlm.hf.tokenizer import save_hf_tokenizer
    from stlm.runs import load_run
    from stlm.tokenizers import BPETokenizer

    root, run, _ = teacher
    loaded = load_run(run)
    cfg = transformers.LlamaConfig(vocab_size=loaded.model.vocab_size, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    folder = tmp_path / "llama"
    transformers.LlamaForCausalLM(cfg).save_pretrained(folder)
    save_hf_tokenizer(loaded.tokenizer, run / "tokenizer", folder)
    records = student(root, "from_llama", f"train.distill.teacher={folder}")
    kl = trajectory(records, "aux.distill_kl")
    assert len(kl) == 4 and all(math.isfinite(v) and v > 1e-3 for v in kl)

    other = tmp_path / "other"
    foreign = BPETokenizer.train(["a completely different corpus of words " * 500], 300)
    foreign.save(other / "stlm")
    for f in folder.glob("tokenizer*"):
        f.unlink()
    save_hf_tokenizer(foreign, other / "stlm", folder)
    with pytest.raises(UserError, match=r"the teacher's tokenizer \(.*llama: .*\) differs from this run's \(bpe"):
        student(root, "refused", f"train.distill.teacher={folder}")


@pytest.mark.slow
def test_a_cached_teacher_run_equals_an_on_the_fly_run_and_resumes_alike(teacher):
    from stlm.train import run_training
    from stlm.train.metrics import read_metrics
    from stlm.train.resume import resume_config

    root, run, _ = teacher
    cache = root / "teacher-top8"
    common = [f"train.distill.teacher={run}", "train.distill.top_k=8", "train.distill.temperature=1.5",
              "train.distill.schedule.shape=linear_up", "train.distill.schedule.end=0.5"]
    live = student(root, "live", *common)
    cached = student(root, "cached", *common, f"train.distill.cache={cache}")
    assert (cache / "manifest.json").is_file()
    for key in ("objective", "loss", "aux.distill_kl", "aux.distill_weight"):
        assert trajectory(cached, key) == pytest.approx(trajectory(live, key), rel=1e-6, abs=1e-7), key
    assert trajectory(live, "aux.distill_weight")[0] == 0.0 and trajectory(live, "aux.distill_weight")[-1] == 0.5

    # the same run resumed from its step-2 checkpoint reuses the cache and computes the same losses
    resumed = root / "runs" / "resumed"
    shutil.copytree(root / "runs" / "cached", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-4")
    if "step-4" in (resumed / "checkpoints" / "best").read_text():
        (resumed / "checkpoints" / "best").unlink()
    stamp = (cache / "manifest.json").stat().st_mtime_ns
    run_training(resume_config(resumed, []), echo=lambda s: None)
    assert trajectory(read_metrics(resumed / "metrics.jsonl")) == trajectory(cached)
    assert (cache / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rebuilt

    # random windows follow the seed: a run with another seed draws windows the cache lacks, and says so
    with pytest.raises(UserError, match="holds no window at token offset"):
        student(root, "other_layout", *common, f"train.distill.cache={cache}", "seed=7")


@pytest.mark.slow
def test_a_sequential_cache_from_the_command_serves_other_batch_sizes_and_bad_caches_are_refused(teacher, monkeypatch):
    import safetensors.torch

    root, run, hf = teacher
    cache = root / "sequential-top4"
    common = [f"train.distill.teacher={run}", "train.distill.top_k=4", "data.sampling=sequential"]
    from test_train_loop import tiny_overrides

    from stlm.cli import main

    # `stlm distill-cache` with a run's overrides builds its cache without training: 4 steps x 8 windows
    assert main(["distill-cache", *tiny_overrides(root, "seq8", *BPE, "train.max_steps=4", "train.loss=distill",
                                                  *common, f"train.distill.cache={cache}")]) == 0
    assert not (root / "runs" / "seq8").exists()
    live = student(root, "seq4_live", *common, "train.batch_size=4", "train.max_steps=8")
    cached = student(root, "seq4_cached", *common, f"train.distill.cache={cache}", "train.batch_size=4",
                     "train.max_steps=8")
    assert trajectory(cached) == pytest.approx(trajectory(live), rel=1e-6, abs=1e-7)

    with pytest.raises(UserError, match="built for another teacher, data or context: teacher_sha256"):
        student(root, "foreign", *common, f"train.distill.cache={cache}", f"train.distill.teacher={hf}")
    with pytest.raises(UserError, match="holds the top 4 ids, fewer than train.distill.top_k=8"):
        student(root, "wider", *common, f"train.distill.cache={cache}", "train.distill.top_k=8")

    broken = root / "broken"
    shutil.copytree(cache, broken)
    shard = next(broken.glob("shard-*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(UserError, match="is corrupt: shard-00000.safetensors is missing or changed"):
        student(root, "corrupt", *common, f"train.distill.cache={broken}")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    half = root / "half"
    monkeypatch.setattr(safetensors.torch, "save_file", fail)  # the build dies writing its shard
    with pytest.raises(OSError, match="disk full"):
        student(root, "interrupted", *common, f"train.distill.cache={half}")
    assert not half.exists() and not list(root.glob(".tmp-half*"))  # nothing for the next run to read
