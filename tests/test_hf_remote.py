"""`stlm export` of every architecture in the zoo: plain Llamas as `LlamaForCausalLM`, the rest as
remote-code folders carrying stlm's model code, all loaded back in a fresh Python where stlm cannot
be imported. Logits equal ours, shared weights are one tensor again with our values, nothing is
reported missing, and `generate()` (with and without a cache) continues greedily as we do; lm-eval's
`hf` backend scores an SLlama export and a byte-level export item by item as `stlm eval` scores the
run."""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from stlm.cli import main
from stlm.config import compose_config
from stlm.errors import UserError
from stlm.hf.export import export_run
from stlm.hf.llama import is_plain_llama
from stlm.hf.modeling_stlm import aliases
from stlm.hf.remote_code import ENTRY_FILE, RemoteCodeError, rewrite, source_closure
from stlm.models import build_model
from stlm.runs import create_run_dir, load_run
from stlm.tokenizers.byte import ByteTokenizer
from stlm.train.checkpoint import save_checkpoint
from stlm.train.optim import build_optimizer

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

PRESET_DIR = Path(__file__).resolve().parents[1] / "src/stlm/config/conf/model"
# One preset per architecture of the zoo (presets differing only in size, dropout or initialisation
# are one architecture; `test_one_preset_of_each_architecture_is_exported` keeps this list whole).
ARCHITECTURES = ["baseline", "byte_pooled", "byte_pooled_query", "byte_token", "gpt2", "learned_pe", "llama_modern",
                 "llama_pwa", "llama_rrhp", "llama_shared", "llama_shared_lora", "llama_spmlp", "simple_ffn",
                 "sincos_pe", "sllama", "sllama_noshare", "tiny-1m-layerskip", "tiny-1m-mod", "tiny-1m-mtp",
                 "tiny-1m-pause"]
BYTE_DECODER = ["byte_pooled", "byte_pooled_query"]  # exported on a BPE, so chunks have several bytes
# Not a preset: the byte-pooled embedder under a token head, on a BPE whose id -> bytes table
# (filled from the tokenizer, not a weight) must travel with the export.
BYTE_POOLED_TOKEN_HEAD = "byte_pooled-token-head"
CASES = ARCHITECTURES + [BYTE_POOLED_TOKEN_HEAD]
TINY = ["model.vocab_size=null", "model.d_model=32", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=null",
        "model.d_ff=64", "model.context_length=64", "data.tokenizer.kind=byte"]
TEXT = "Once upon a time, a tiny model"
NEW_TOKENS = 6
# What stlm's model code may import from outside stlm.models: the exported folder carries these
# too, so a new import here is a decision (keep the export small and free of heavy dependencies).
ALLOWED_OUTSIDE_MODELS = {"stlm.hf.modeling_stlm", "stlm.config.schema", "stlm.errors", "stlm.batch",
                          "stlm.data.chunks", "stlm.tokenizers.base", "stlm.tokenizers.byte", "stlm.fileio"}


def _random_run(root: Path, preset: str, tokenizer=None, *extra: str, name: str | None = None) -> Path:
    """A run directory holding a seeded random model of `preset` at a tiny size (`extra` overrides
    replace TINY's of the same key); every weight is perturbed, so zero-initialised parts (LoRA's
    B) matter too."""
    keys = {e.split("=")[0] for e in extra}
    tiny = [t for t in TINY if t.split("=")[0] not in keys]
    cfg = compose_config([f"model={preset}", *tiny, *extra]) if extra else copy.deepcopy(_tiny(preset))
    cfg.runs_dir, cfg.run_name = str(root / "runs"), name or preset
    tok = tokenizer or ByteTokenizer()
    run = create_run_dir(cfg)
    tok.save(run / "tokenizer")
    torch.manual_seed(0)
    model = build_model(cfg.model, tok)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(run / "checkpoints", 1, model, build_optimizer(model, cfg.train, torch.device("cpu")), {})
    return run


@functools.cache
def _tiny(preset: str):
    """The run config of `preset` at TINY's size (composed once per preset)."""
    return compose_config([f"model={preset}", *TINY])


def _greedy(model, ids: torch.Tensor, n: int) -> list[int]:
    out = ids[0].tolist()
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model(torch.tensor([out])).logits[0, -1].argmax()))
    return out


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{case: (export folder, what the fresh interpreter must find)} for every case."""
    from stlm.tokenizers import BPETokenizer

    root = tmp_path_factory.mktemp("zoo")
    done = {}
    bpe = BPETokenizer.train(["Once upon a time, the tiny cat sat on a mat. " * 40], 300)
    for case in CASES:
        if case == BYTE_POOLED_TOKEN_HEAD:
            run = _random_run(root, "byte_pooled", bpe, "model.head=token", "data.tokenizer.kind=bpe",
                              "model.byte_chunk_max=48", name=case)
        elif case in BYTE_DECODER:
            run = _random_run(root, case, bpe, "data.tokenizer.kind=bpe", "model.byte_chunk_max=48")
        else:
            run = _random_run(root, case)
        out = root / "hf" / case
        assert main(["export", str(run), str(out)]) == 0
        loaded = load_run(run)
        ours = loaded.model
        ids = torch.tensor([loaded.tokenizer.encode(TEXT)])
        with torch.no_grad():
            logits = ours(ids).logits
            loss = ours(ids, torch.nn.functional.pad(ids[:, 1:], (0, 1), value=-100)).loss  # with aux terms
        remote = not is_plain_llama(ours.cfg)
        if remote:  # every tensor, aliases and the buffers computed at construction or from the tokenizer too
            ties = {f"model.{k}": f"model.{v}" for k, v in aliases(ours).items()}
            state = {f"model.{k}": v for k, v in [*ours.named_parameters(remove_duplicate=False),
                                                  *ours.named_buffers(remove_duplicate=False)]}
        else:
            ties = {"lm_head.weight": "model.embed_tokens.weight"} if ours.cfg.tie_embeddings else {}
            state = {}
        expected = {"ids": ids, "logits": logits, "loss": loss, "greedy": _greedy(ours, ids, NEW_TOKENS), "ties": ties,
                    "state": state, "remote": remote, "logprobs": ours.logits_are_logprobs}
        torch.save(expected, root / "hf" / f"{case}.expected.pt")
        done[case] = (out, expected)
    return done


CHILD = r"""
import json, sys
sys.modules["stlm"] = None  # stlm must not be importable here
try:
    import stlm  # noqa: F401
    raise SystemExit("stlm is importable")
except ImportError:
    pass
import torch, transformers
from pathlib import Path

report = {}
for folder in sys.argv[2:]:
    folder = Path(folder)
    want = torch.load(folder.parent / f"{folder.name}.expected.pt", weights_only=True)
    model, info = transformers.AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True,
                                                                    output_loading_info=True)
    model.eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    ids = want["ids"]
    with torch.no_grad():
        logits, ours = model(ids).logits, want["logits"]
        vocab = ours.shape[-1]
        scored = logits.log_softmax(-1)[..., :vocab] if want["logprobs"] else logits[..., :vocab]
        same_inf = torch.equal(torch.isneginf(scored), torch.isneginf(ours))  # ids with no chunk
        finite = torch.isfinite(ours)
        diff = (scored[finite] - ours[finite]).abs().max().item() if same_inf else float("inf")
        loss_diff = abs(model(ids, labels=ids).loss.item() - want["loss"].item())
        kw = dict(max_new_tokens=len(want["greedy"]) - ids.shape[1], do_sample=False)
        cached = model.generate(ids, use_cache=True, **kw)[0].tolist()
        uncached = model.generate(ids, use_cache=False, **kw)[0].tolist()
    ties = [a for a, b in want["ties"].items()
            if model.get_parameter(a) is not model.get_parameter(b)
            or model.get_parameter(a).data_ptr() != model.get_parameter(b).data_ptr()]
    values = dict(model.named_parameters(remove_duplicate=False)) | dict(model.named_buffers(remove_duplicate=False))
    wrong = [k for k, v in want["state"].items() if not torch.equal(values[k], v)]
    report[folder.name] = {
        "class": type(model).__name__, "missing": sorted(info["missing_keys"]),
        "unexpected": sorted(info["unexpected_keys"]), "logit_diff": diff, "width": logits.shape[-1], "loss_diff": loss_diff, "broken_ties": ties,
        "wrong_values": wrong, "generate_cached": cached == want["greedy"],
        "generate_uncached": uncached == want["greedy"], "tokenizer": tok(sys.argv[1]).input_ids,
    }
print("REPORT" + json.dumps(report))
"""


@pytest.fixture(scope="module")
def reloaded(exports, tmp_path_factory):
    """One fresh interpreter, without stlm, loading every export (from a folder outside the repo)."""
    cwd = tmp_path_factory.mktemp("fresh")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(cwd / "modules"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    folders = [str(out) for out, _ in exports.values()]
    proc = subprocess.run([sys.executable, "-c", CHILD, TEXT, *folders], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("REPORT", 1)[1])


@pytest.mark.parametrize("case", CASES)
def test_every_zoo_architecture_round_trips_without_stlm(case, exports, reloaded):
    out, want = exports[case]
    got = reloaded[case]
    assert got["class"] == ("StlmForCausalLM" if want["remote"] else "LlamaForCausalLM")
    assert (out / ENTRY_FILE).is_file() == want["remote"]
    assert got["missing"] == [] and got["unexpected"] == []  # nothing newly initialised or dropped
    # a head of log-probabilities gets the remainder column, so that a softmax gives exactly ours
    assert got["width"] == want["logits"].shape[-1] + want["logprobs"]
    assert got["logit_diff"] <= 1e-4 and got["loss_diff"] <= 1e-4  # labels: the training loss
    assert got["broken_ties"] == [] and got["wrong_values"] == []
    assert got["generate_cached"] and got["generate_uncached"]
    assert got["tokenizer"] == want["ids"][0].tolist()
    if want["remote"]:
        for path in out.glob("*.py"):  # the folder's code imports nothing of stlm
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    assert not (node.module or "").startswith("stlm"), (path.name, node.module)
                elif isinstance(node, ast.Import):
                    assert not any(a.name.split(".")[0] == "stlm" for a in node.names), path.name
        with safe_open(out / "model.safetensors", "pt") as weights:  # each shared tensor saved once
            assert not set(weights.keys()) & set(want["ties"]) and set(weights.keys()) <= set(want["state"])
        config = json.loads((out / "config.json").read_text())
        assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_stlm.StlmForCausalLM"
        assert "trust_remote_code=True" in (out / "README.md").read_text()


def test_one_preset_of_each_architecture_is_exported():
    first_of = {}
    for preset in sorted(p.stem for p in PRESET_DIR.glob("*.yaml")):
        shape = dataclasses.asdict(_tiny(preset).model)
        for knob in ("name", "dropout", "init_std", "zero_init_projections"):  # not the architecture
            shape.pop(knob)
        first_of.setdefault(json.dumps(shape, sort_keys=True), preset)
    assert sorted(first_of.values()) == sorted(ARCHITECTURES)


def test_the_zoo_exercises_both_routes_and_every_kind_of_sharing(exports):
    remote = {p for p, (_, want) in exports.items() if want["remote"]}
    assert set(exports) - remote == {"baseline", "byte_token"}  # tied and untied plain Llamas
    lengths = exports[BYTE_POOLED_TOKEN_HEAD][1]["state"]["model.embedder.chunks.lengths"]
    assert lengths[257:].max() > 1  # the BPE's table, not the byte tokenizer's default one
    ties = {p: want["ties"] for p, (_, want) in exports.items()}
    assert ties["gpt2"] == {"model.head.linear.weight": "model.embedder.token.weight"}  # tied, remote
    assert "model.core.blocks.1.attn.table.weight" in ties["sllama"]  # whole-layer sharing
    assert "model.core.blocks.1.ffn.shared.gate_proj.weight" in ties["llama_shared_lora"]  # under LoRA
    assert "lm_head.weight" in ties["baseline"] and not ties["byte_token"]


def test_model_code_imports_only_what_the_export_carries():
    outside = {m for m in source_closure() if not m.startswith("stlm.models")}
    assert outside <= ALLOWED_OUTSIDE_MODELS, outside - ALLOWED_OUTSIDE_MODELS


def test_an_import_the_flat_copy_cannot_express_is_refused():
    ok = rewrite("stlm.models.x", "import stlm.models.components  # registers\nfrom stlm.errors import UserError\n")
    assert ok == ("from .stlm_models_components import __name__ as _stlm_models_components  # noqa: F401 "
                  "(runs it)\nfrom .stlm_errors import UserError\n")
    with pytest.raises(RemoteCodeError, match="uses the module object 'stlm'"):
        rewrite("stlm.models.x", "import stlm.models.components\nstlm.models.components.attention\n")


def test_unexportable_runs_are_refused_with_the_reason(tmp_path):
    from stlm.tokenizers import BPETokenizer
    from stlm.tokenizers.chunked import with_chunk_limit

    chunked = with_chunk_limit(BPETokenizer.train(["the cat sat on the mat, then the cat ran " * 50], 300), 2)
    run = _random_run(tmp_path / "chunked", "tiny-1m", chunked)
    with pytest.raises(UserError, match="splits tokens longer than 2 bytes.*max_chunk_bytes=null"):
        export_run(run, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def _assert_lm_eval_scores_the_export_as_stlm_eval(run: Path, tmp_path: Path) -> None:
    """lm-eval's `hf` backend, loading `run`'s export with trust_remote_code, scores 16 BLiMP items
    (two paradigms) as `stlm eval` scores the run: log-likelihoods within 1e-4, same metrics."""
    pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM

    from conftest import require_shared
    from harness_agreement import assert_items_agree
    from stlm.eval.harness import harness_tasks
    from stlm.eval.runner import select_subset
    from stlm.eval.tasks import TASKS

    export_run(run, tmp_path / "hf")
    ours = load_run(run)
    lm = HFLM(pretrained=str(tmp_path / "hf"), trust_remote_code=True, batch_size=8, device="cpu",
              dtype="float32")
    task = TASKS["blimp"]
    records = [r for r in select_subset(task.records(require_shared("")), 8, "blimp")
               if r.subtask in ("adjunct_island", "npi_present_1")]
    (tmp_path / "tasks").mkdir()
    tasks, order = harness_tasks("blimp", records, tmp_path / "tasks")
    items, _, _ = assert_items_agree(task, records, tasks, order, ours.model, ours.tokenizer, batch_size=8,
                                     lm=lm, tolerance=1e-4)
    assert len(items) == 16


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore")
def test_lm_eval_hf_backend_scores_a_remote_code_export_as_stlm_eval_scores_the_run(tmp_path):
    """SLlama (PWA, SPMLP, RRHP, one shared layer) on BLiMP, item by item."""
    run = _random_run(tmp_path, "sllama", None, "model.context_length=256")
    _assert_lm_eval_scores_the_export_as_stlm_eval(run, tmp_path)


@pytest.mark.shared_data
@pytest.mark.filterwarnings("ignore")
def test_lm_eval_hf_backend_scores_a_byte_decoder_export_as_stlm_eval_scores_the_run(tmp_path):
    """The byte-level model, whose head spells each token: lm-eval's `hf` backend takes a softmax
    over the export's logits (every id's spelling log-probability and the remainder column) and
    must find, item by item on BLiMP, the chunk log-probabilities `stlm eval` sums."""
    from stlm.tokenizers import BPETokenizer

    bpe = BPETokenizer.train(["Who should the guests that Mary met praise? The dogs were not barking. " * 30], 300)
    run = _random_run(tmp_path, "byte_pooled", bpe, "data.tokenizer.kind=bpe", "model.byte_chunk_max=48",
                      "model.context_length=256")
    assert load_run(run).model.logits_are_logprobs
    _assert_lm_eval_scores_the_export_as_stlm_eval(run, tmp_path)
