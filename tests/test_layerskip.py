"""LayerSkip: layer dropout rising with depth, early-exit losses through the shared head, exit at
a layer, confidence exit, and self-speculative decoding equal to full greedy decoding."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from stlm.config import compose_config
from stlm.config.schema import ModelConfig
from stlm.generate import generate_ids
from stlm.models import build_model
from stlm.models.components.early_exit import exit_weights
from stlm.models.core import layer_dropout_rates
from stlm.speculative import confidence_exit_greedy, self_speculative_greedy

SMALL = ModelConfig(d_model=32, n_layers=4, n_heads=4, d_ff=64, context_length=64)


def _model(preset: str, vocab: int = 40, seed: int = 0):
    cfg = dataclasses.replace(compose_config([f"model={preset}"]).model, d_model=48, d_ff=96, n_heads=4,
                              n_kv_heads=None, vocab_size=None, context_length=64, n_layers=4)
    torch.manual_seed(seed)
    return build_model(cfg, vocab).double().eval()  # float64: no near-tie flips between passes


@pytest.mark.parametrize("preset", ["tiny-1m", "tiny-1m-layerskip", "sllama", "llama_shared_lora", "learned_pe",
                                    "tiny-1m-mod"])
def test_self_speculative_decoding_equals_full_greedy(preset, one_thread):
    model = _model(preset)
    for seed, exit_layer, draft in ((0, 1, 4), (1, 2, 3), (2, 3, 1), (3, 0, 5), (4, 4, 2)):
        prompt = torch.randint(0, 40, (6,), generator=torch.Generator().manual_seed(seed)).tolist()
        reference = generate_ids(model, prompt, 30, temperature=0)
        got, stats = self_speculative_greedy(model, prompt, 30, exit_layer=exit_layer, draft_tokens=draft)
        assert got == reference, (exit_layer, draft)
        assert stats.tokens == 30 and 0 <= stats.accepted <= stats.drafted
        if exit_layer == 4:  # the whole model as its own draft: everything is accepted
            assert stats.acceptance_rate == 1.0


def test_speculative_decoding_stops_at_the_stop_token(one_thread):
    model = _model("tiny-1m")
    prompt = [3, 1, 4, 1, 5]
    full = generate_ids(model, prompt, 20, temperature=0)
    stop = full[7]
    expected = generate_ids(model, prompt, 20, temperature=0, stop_id=stop)
    got, _ = self_speculative_greedy(model, prompt, 20, exit_layer=2, draft_tokens=3, stop_id=stop)
    assert got == expected == full[: full.index(stop)]


def test_exit_layer_and_continue_encode_compose_to_the_full_model(one_thread):
    model = _model("tiny-1m")
    ids = torch.randint(0, 40, (2, 9))
    full = model.encode(ids)
    for e in range(5):
        torch.testing.assert_close(model.continue_encode(model.encode(ids, exit_layer=e), torch.arange(9),
                                                         from_layer=e), full)
    torch.testing.assert_close(model.encode(ids, exit_layer=4), full)
    with pytest.raises(ValueError, match="exit_layer"):
        model.encode(ids, exit_layer=5)


def test_confidence_exit_never_early_equals_greedy_and_always_early_runs_few_layers(one_thread):
    model = _model("tiny-1m")
    prompt = [7, 2, 9]
    reference = generate_ids(model, prompt, 15, temperature=0)
    never, stats = confidence_exit_greedy(model, prompt, 15, threshold=1.01)
    assert never == reference and stats.layers_run == 15 * 4
    _, eager = confidence_exit_greedy(model, prompt, 15, threshold=0.0, min_layer=1)
    assert eager.layers_run == 15 * 1


def test_early_exit_losses_are_the_head_at_every_layer(one_thread):
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(SMALL, head="early_exit", early_exit_scale=0.6), 50)
    seq = torch.randint(0, 50, (2, 11))
    ids, targets = seq[:, :-1], seq[:, 1:]
    model.eval()
    out = model(ids, targets, output_hidden_states=True)
    assert set(out.aux_losses) == {"exit_1", "exit_2", "exit_3"}
    weights = exit_weights(4, 0.6)
    assert weights == pytest.approx([0.6 * 1 / 20, 0.6 * 3 / 20, 0.6 * 6 / 20])  # paper's sum_{i<=l} i
    total = out.lm_loss
    for layer in (1, 2, 3):
        by_hand = F.cross_entropy(model.head_logits(out.hidden_states[layer]).reshape(-1, 50), targets.reshape(-1))
        torch.testing.assert_close(out.aux_losses[f"exit_{layer}"], by_hand)
        total = total + weights[layer - 1] * by_hand
    torch.testing.assert_close(out.loss, total)


def test_layer_dropout_rises_with_depth_and_is_seeded(one_thread):
    rates = layer_dropout_rates(0.2, 4)
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2) and rates == sorted(rates)
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(SMALL, layer_dropout=0.9), 50)
    ids = torch.randint(0, 50, (16, 8))
    model.train()
    torch.manual_seed(1)
    a = model(ids).logits
    torch.manual_seed(1)
    b = model(ids).logits
    torch.manual_seed(2)
    c = model(ids).logits
    assert torch.equal(a, b) and not torch.equal(a, c)  # the same seed drops the same layers
    model.eval()
    torch.testing.assert_close(model(ids).logits, model(ids).logits)  # no dropping at inference
    plain = build_model(SMALL, 50)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(plain.eval()(ids).logits, model(ids).logits)


def test_generate_command_decodes_self_speculatively(tmp_path, capsys, one_thread):
    from stlm.cli import main
    from stlm.config.schema import RunConfig, TrainConfig
    from stlm.runs import create_run_dir
    from stlm.tokenizers import ByteTokenizer
    from stlm.train.checkpoint import save_checkpoint
    from stlm.train.optim import build_optimizer

    cfg = RunConfig(model=dataclasses.replace(SMALL, head="early_exit"), runs_dir=str(tmp_path), run_name="r")
    run = create_run_dir(cfg)
    tok = ByteTokenizer()
    tok.save(run / "tokenizer")
    torch.manual_seed(0)
    model = build_model(cfg.model, tok.vocab_size)
    save_checkpoint(run / "checkpoints", 1, model, build_optimizer(model, TrainConfig(), torch.device("cpu")), {})
    assert main(["generate", str(run), "--prompt", "ab", "--temperature", "0", "--max-new-tokens", "12",
                 "--speculative-exit", "2"]) == 0
    captured = capsys.readouterr()
    assert "self-speculative: exit after layer 2" in captured.err
    assert main(["generate", str(run), "--speculative-exit", "2"]) == 2  # sampling refused: one-line error
