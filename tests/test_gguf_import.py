"""`stlm import` of GGUF files: real GGUFs written here with the `gguf` package's GGUFWriter as
llama.cpp's converter writes a Llama (its tensor names, its reordering of the query and key rows,
a byte-level BPE vocabulary with merges, token types and BOS/EOS ids) from random-init transformers
Llamas (GQA), in float32 (untied head) and Q8_0 (tied head). The imported runs' logits equal
transformers' own model loaded from the same file; they evaluate and generate; wrong inputs fail
with one line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from stlm.cli import main
from stlm.errors import UserError
from stlm.hf.gguf_file import find_gguf
from stlm.hf.import_llama import import_llama
from stlm.runs import load_run

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = "The cat saw the dog. Then the dogs ran home, and it was late."
N_HEADS, N_KV_HEADS, N_LAYERS = 4, 2, 2


def _vocabulary(folder):
    """A byte-level BPE trained on the built-in corpus, plus a BOS: (tokens in GPT-2's byte alphabet
    by id, merges, special tokens)."""
    from stlm.data.grammar import generate_stories
    from stlm.tokenizers import BPETokenizer

    BPETokenizer.train(list(generate_stories(seed=0, n_stories=150)), 300).save(folder / "bpe")
    model = json.loads((folder / "bpe" / "tokenizer.json").read_text())
    tokens = sorted(model["model"]["vocab"], key=model["model"]["vocab"].get) + ["<s>"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["model"]["merges"]]
    return tokens, merges, {a["content"] for a in model["added_tokens"]} | {"<s>"}


def _llama_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's order of a query/key projection's rows: per head, the two rotate-half halves
    interleaved (its RoPE rotates adjacent pairs); transformers undoes it on load."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, -1).swapaxes(1, 2).reshape(weight.shape)


def write_llama_gguf(path, hf, vocabulary, qtype: str = "F32") -> None:
    """`hf` (a LlamaForCausalLM) and its vocabulary as llama.cpp's convert_hf_to_gguf.py writes
    them; matrices in `qtype` (F32, F16 or Q8_0), norms in F32; no output.weight when tied."""
    cfg, (tokens, merges, specials) = hf.config, vocabulary
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(path.stem)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"] if hasattr(cfg, "rope_parameters") else cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<s>"))
    writer.add_eos_token_id(tokens.index("<|endoftext|>"))
    writer.add_add_bos_token(True)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for key, tensor in hf.state_dict().items():
        if key == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        module, kind = key.rsplit(".", 1)
        name = f"{names.get_name(module)}.{kind}"
        data = tensor.float().numpy()
        if name.endswith("attn_q.weight"):
            data = _llama_rows(data, cfg.num_attention_heads)
        elif name.endswith("attn_k.weight"):
            data = _llama_rows(data, cfg.num_key_value_heads)
        if qtype == "F32" or data.ndim == 1:
            writer.add_tensor(name, data)
        else:
            kind = gguf.GGMLQuantizationType[qtype]
            writer.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _random_llama(vocab_size: int, tied: bool):
    cfg = transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=N_LAYERS, num_attention_heads=N_HEADS,
                                   num_key_value_heads=N_KV_HEADS, max_position_embeddings=128,
                                   rms_norm_eps=1e-5, tie_word_embeddings=tied, initializer_range=0.2)
    if hasattr(cfg, "rope_parameters"):
        cfg.rope_parameters = {"rope_type": "default", "rope_theta": 500000.0}
    else:
        cfg.rope_theta = 500000.0
    torch.manual_seed(3 + tied)
    return transformers.LlamaForCausalLM(cfg).eval()


def _rounded(hf, qtype: str):
    """A copy of `hf` whose matrices went through `qtype` and back (gguf's own quantiser)."""
    import copy

    rounded = copy.deepcopy(hf)
    if qtype != "F32":
        kind = gguf.GGMLQuantizationType[qtype]
        for p in rounded.parameters():
            if p.ndim == 2:
                p.data = torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(p.detach().numpy(), kind), kind))
    return rounded


@pytest.fixture(scope="module")
def imports(tmp_path_factory):
    """{qtype: (gguf path, original float model, imported run dir)}: F32 untied, Q8_0 tied."""
    root = tmp_path_factory.mktemp("gguf")
    vocabulary = _vocabulary(root)
    done = {}
    for qtype, tied in (("F32", False), ("Q8_0", True)):
        hf = _random_llama(len(vocabulary[0]), tied)
        path = root / qtype / f"tiny-{qtype}.gguf"
        path.parent.mkdir()
        write_llama_gguf(path, hf, vocabulary, qtype)
        source = path if qtype == "F32" else path.parent  # the file, or the folder holding it
        assert main(["import", str(source), str(root / "runs" / qtype)]) == 0
        done[qtype] = path, hf, root / "runs" / qtype
    return done


@pytest.mark.parametrize("qtype", ["F32", "Q8_0"])
def test_gguf_import_gives_the_logits_of_transformers_loading_the_same_file(imports, qtype):
    path, original, run_dir = imports[qtype]
    run = load_run(run_dir)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                               dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    ids = tok(TEXT, return_tensors="pt").input_ids
    assert ids[0, 0].item() == tok.bos_token_id == run.tokenizer.bos_id
    assert ids[0].tolist() == run.tokenizer.encode(TEXT) and run.tokenizer.decode(ids[0, 1:].tolist()) == TEXT
    with torch.no_grad():
        ours, dequantised = run.model(ids).logits, theirs(ids).logits
        # and the file is the original model (llama.cpp's row order undone), each matrix rounded as
        # the file stores it: Q8_0 blocks of 32 weights, one scale each
        written = _rounded(original, qtype)(ids).logits
    assert (ours - dequantised).abs().max().item() <= 1e-4
    assert (ours - written).abs().max().item() <= 1e-4
    cfg = run.cfg.model
    assert (cfg.n_heads, cfg.n_kv_heads, cfg.n_layers, cfg.rope_theta) == (N_HEADS, N_KV_HEADS, N_LAYERS, 500000.0)
    assert cfg.tie_embeddings == (qtype == "Q8_0") == original.config.tie_word_embeddings
    info = json.loads((run_dir / "import.json").read_text())
    assert info["format"] == "gguf" and info["source"] == str(path.resolve())
    assert info["gguf_tensor_types"] == ({"F32": 21} if qtype == "F32" else {"Q8_0": 15, "F32": 5})
    assert info["max_logit_difference"] <= 1e-4


def test_a_gguf_import_evaluates_and_generates(imports, capsys):
    """The built-in minimal pairs (bits per byte reads the run's data, the built-in corpus: preparing
    it takes half a minute, too long for a unit test; measured by hand)."""
    _, _, run_dir = imports["F32"]
    run = load_run(run_dir)
    assert run.cfg.data.name == "grammar" and run.cfg.data.sources[0].max_documents  # finite data to read
    assert main(["eval", str(run_dir), "--tasks", "grammar", "--limit", "2", "--no-progress"]) == 0
    result = json.loads((run_dir / "eval" / "grammar.json").read_text())
    assert result["task"] == "grammar" and 0 <= result["acc"] <= 100, result
    capsys.readouterr()
    assert main(["generate", str(run_dir), "--prompt", "The cat", "--max-new-tokens", "8"]) == 0
    assert "The cat" in capsys.readouterr().out


def test_gguf_import_errors_are_one_line(imports, tmp_path, monkeypatch):
    path, _, _ = imports["F32"]
    out = tmp_path / "out"

    def refused(match, source, gguf_file=None):
        with pytest.raises(UserError, match=match) as e:
            import_llama(source, out, gguf_file=gguf_file)
        assert "\n" not in str(e.value) and not out.exists()

    refused("does not exist", tmp_path / "missing.gguf")
    refused(r"missing.gguf does not exist \(--gguf-file", path.parent, "missing.gguf")
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.gguf", "b.gguf"):
        (two / name).write_bytes(path.read_bytes())
    refused("holds 2 .gguf files .*--gguf-file NAME", two)
    assert find_gguf(two, "b.gguf") == (two, "b.gguf")
    (tmp_path / "bad.gguf").write_bytes(b"this is not a gguf file" * 10)
    refused("bad.gguf is not a valid GGUF file", tmp_path / "bad.gguf")
    data = path.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 4096])
    refused("cut.gguf is not a valid GGUF file", tmp_path / "cut.gguf")
    for name, arch, tensor in (("qwen", "qwen2", "token_embd"), ("yarn", "llama", "token_embd"),
                               ("llama31", "llama", "rope_freqs")):
        other = gguf.GGUFWriter(tmp_path / f"{name}.gguf", arch)
        if name == "yarn":
            other.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        other.add_tensor(f"{tensor}.weight", np.zeros((4, 8), dtype=np.float32))
        other.write_header_to_file(), other.write_kv_data_to_file(), other.write_tensors_to_file(), other.close()
    refused("holds a 'qwen2' model; stlm imports Llama GGUF files", tmp_path / "qwen.gguf")
    refused(r"scales RoPE \(yarn\)", tmp_path / "yarn.gguf")
    refused(r"scales RoPE \(rope_freqs\)", tmp_path / "llama31.gguf")
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if the package were not installed
    refused("needs the gguf package: pip install gguf", path)
