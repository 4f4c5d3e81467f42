"""`stlm import`: random-init transformers Llamas (GQA; tied and untied embeddings; a tokenizer that
puts BOS first) become stlm runs whose logits equal transformers', which evaluate item by item as
lm-eval's `hf` backend scores the original, generate, and fine-tune with `init_from=`."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import require_shared
from stlm.cli import main
from stlm.errors import UserError
from stlm.runs import load_run

transformers = pytest.importorskip("transformers")
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.shared_data]

TEXT = "ROMEO: But soft, what light through yonder window breaks? It is the east."


def _hf_tokenizer(folder):
    """A Llama-like HF tokenizer made from our trained byte-level BPE: <s> (BOS) first, EOS last."""
    from tokenizers import Tokenizer, processors

    from stlm.tokenizers import BPETokenizer

    text = require_shared("corpora/tinyshakespeare/input.txt").read_text()[:30_000]
    BPETokenizer.train([text], 300).save(folder / "bpe")
    rust = Tokenizer.from_file(str(folder / "bpe" / "tokenizer.json"))
    rust.add_special_tokens(["<s>"])
    bos = rust.token_to_id("<s>")
    rust.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=rust, bos_token="<s>", eos_token="<|endoftext|>")


def _hf_llama(folder, tied: bool):
    tok = _hf_tokenizer(folder)
    cfg = transformers.LlamaConfig(vocab_size=304, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   rms_norm_eps=1e-5, tie_word_embeddings=tied, initializer_range=0.2,
                                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if hasattr(cfg, "rope_parameters"):
        cfg.rope_parameters = {"rope_type": "default", "rope_theta": 500000.0}
    else:
        cfg.rope_theta = 500000.0
    torch.manual_seed(1 + tied)
    model = transformers.LlamaForCausalLM(cfg).eval()
    out = folder / ("tied" if tied else "untied")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, model, tok


@pytest.fixture(scope="module")
def importer(tmp_path_factory):
    """imported(tied): a saved random Llama, imported once per kind of embedding."""
    done = {}

    def imported(tied: bool):
        if tied not in done:
            root = tmp_path_factory.mktemp("import")
            folder, hf, hf_tok = _hf_llama(root, tied)
            assert main(["import", str(folder), str(root / "runs" / "imported")]) == 0
            done[tied] = root, folder, hf, hf_tok, load_run(root / "runs" / "imported")
        return done[tied]
    return imported


@pytest.fixture(params=[True, False], ids=["tied", "untied"])
def imported(request, importer):
    return importer(request.param)


@pytest.fixture
def imported_tied(importer):
    return importer(True)


@pytest.fixture
def imported_untied(importer):
    return importer(False)


def test_import_gives_transformers_logits(imported):
    root, _, hf, hf_tok, run = imported
    ids = hf_tok(TEXT, return_tensors="pt").input_ids
    assert ids[0, 0].item() == hf_tok.bos_token_id and ids[0].tolist() == run.tokenizer.encode(TEXT)
    assert run.tokenizer.decode(ids[0].tolist()) == TEXT
    with torch.no_grad():
        assert (run.model(ids).logits - hf(ids).logits).abs().max().item() <= 1e-4
    cfg = run.cfg.model
    assert (cfg.n_heads, cfg.n_kv_heads, cfg.rope_theta, cfg.vocab_size) == (4, 2, 500000.0, 304)
    tied = hf.config.tie_word_embeddings
    assert cfg.tie_embeddings == tied
    assert (run.model.head.linear.weight.data_ptr() == run.model.embedder.token.weight.data_ptr()) == tied
    info = json.loads((root / "runs" / "imported" / "import.json").read_text())
    assert info["max_logit_difference"] <= 1e-4 and info["bos_id"] == hf_tok.bos_token_id


@pytest.mark.filterwarnings("ignore")
def test_imported_run_evaluates_as_lm_eval_hf_backend_scores_the_original(imported_tied, tmp_path):
    """BLiMP (empty context: the prefix is the tokenizer's BOS) and ARC-Easy, item by item."""
    pytest.importorskip("lm_eval")
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM

    from stlm.eval.harness import harness_tasks
    from stlm.eval.runner import score_items, select_subset
    from stlm.eval.tasks import TASKS

    _, folder, _, _, run = imported_tied
    lm = HFLM(pretrained=str(folder), batch_size=16, device="cpu", dtype="float32")
    for name, limit, sub in (("blimp", 10, "adjunct_island"), ("arc_easy", 12, None)):
        task = TASKS[name]
        records = [r for r in select_subset(task.records(require_shared("")), limit, name) if r.subtask == sub]
        items = [task.item(r) for r in records]
        ours = score_items(run.model, run.tokenizer, items, batch_size=16)
        (tmp_path / name).mkdir()
        tasks, order = harness_tasks(name, records, tmp_path / name)
        out = evaluate(lm, tasks, log_samples=True, bootstrap_iters=0)
        samples = {(t, s["doc_id"]): s for t in tasks for s in out["samples"][t]}
        for item, mine, key in zip(items, ours, order):
            theirs = samples[key]
            lls = [float(r[0]) for r in theirs["filtered_resps"]]
            assert max(abs(a - b) for a, b in zip(lls, mine.logprobs)) < 1e-4, (name, key)
            assert mine.values["acc"] == theirs["acc"], (name, key)


def test_imported_run_generates_and_fine_tunes(imported_untied, capsys, small_data):
    root, _, _, _, run = imported_untied
    assert main(["generate", str(root / "runs" / "imported"), "--prompt", "ROMEO:", "--max-new-tokens", "8"]) == 0
    assert "ROMEO:" in capsys.readouterr().out
    text = require_shared("corpora/tinyshakespeare/input.txt")
    name = f"tuned-{run.cfg.model.tie_embeddings}"
    assert main(["train", f"init_from={root / 'runs' / 'imported'}", f"runs_dir={root / 'runs'}", f"run_name={name}",
                 "data.name=shakespeare", f"data.sources=[{{name:text,path:{text}}}]",
                 "train.context_length=32", "train.batch_size=8", "train.max_steps=3", "train.warmup_steps=1",
                 "train.eval_every=3", "train.eval_batches=2", "train.progress=false", "eval.final_val_batches=2",
                 "eval.sample_tokens=4", *small_data]) == 0
    tuned = load_run(root / "runs" / name, which="last")
    assert tuned.tokenizer.fingerprint() == run.tokenizer.fingerprint() and tuned.step == 3
    start = run.model.state_dict()
    changed = [k for k, v in tuned.model.state_dict().items() if not torch.equal(v, start[k])]
    assert changed and tuned.cfg.model.d_model == run.cfg.model.d_model  # it started from the import


def test_an_imported_run_exports_back_to_the_same_model(imported_untied, tmp_path):
    root, _, hf, hf_tok, _ = imported_untied
    assert main(["export", str(root / "runs" / "imported"), str(tmp_path / "back")]) == 0
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    ids = hf_tok(TEXT, return_tensors="pt").input_ids
    assert tok(TEXT).input_ids == ids[0].tolist() and tok.bos_token_id == hf_tok.bos_token_id
    with torch.no_grad():
        assert (again(ids).logits - hf(ids).logits).abs().max().item() <= 1e-5
    assert "Imported from" in (tmp_path / "back" / "README.md").read_text()


def test_import_refuses_what_it_cannot_compute(tmp_path):
    cfg = transformers.GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(UserError, match="holds a 'gpt2' model; stlm imports Llama"):
        main_import(tmp_path / "gpt2", tmp_path / "out")
    with pytest.raises(UserError, match="not a transformers model folder"):
        main_import(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def main_import(folder, out):
    from stlm.hf.import_llama import import_llama

    return import_llama(folder, out)
