"""The SLlama study: markup stripping, budget planning, and one tiny end-to-end run on real text
(a slice of the shared corpora, real BLiMP files) that writes the table, JSON and plot."""

from __future__ import annotations

import json
import os

import pytest

from conftest import require_shared
from stlm.errors import UserError
from stlm.study.mediawiki import articles, strip_markup
from stlm.study.plan import plan_for

WIKITEXT = """{{Infobox person|name=Ada {{nowrap|Lovelace}}}}
'''Ada Lovelace''' was an [[England|English]] [[mathematician]].<ref name="a">A source.</ref> She \
worked on the [[Analytical Engine]].<ref name="b"/><!-- hidden -->
[[File:Ada.jpg|thumb|A portrait of [[Ada Lovelace|Ada]].]]
{| class="wikitable"
| a cell || another
|}
== Life ==
* She wrote [http://example.org the first program] in 1843.&nbsp;It ran.

== References ==
{{reflist}}
[[Category:Mathematicians]]"""


def test_strip_markup_keeps_only_prose():
    assert strip_markup(WIKITEXT) == (
        "Ada Lovelace was an English mathematician. She worked on the Analytical Engine.\n\n"
        "Life\nShe wrote the first program in 1843. It ran.")


def test_articles_skip_redirects_and_other_namespaces(tmp_path):
    page = "<page><title>{t}</title><ns>{ns}</ns><revision><text>{x}</text></revision></page>"
    xml = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">'
           + page.format(t="Kept", ns=0, x="A '''real''' article.")
           + page.format(t="Redirect", ns=0, x="#REDIRECT [[Kept]]")
           + page.format(t="Talk:Kept", ns=1, x="A talk page.") + "</mediawiki>")
    (tmp_path / "dump.xml").write_text(xml)
    assert list(articles(tmp_path / "dump.xml")) == [("Kept", "A real article.")]


def test_plan_scales_tokens_batches_and_evaluation():
    small, default, gpu = plan_for(0.05), plan_for(1), plan_for(100)
    assert small.tokens < default.tokens < gpu.tokens
    assert default.tokens >= 1_200_000 and default.batch_size == 8 and default.steps * 8 * 256 == default.tokens
    assert gpu.batch_size == 64 and gpu.blimp_limit is None  # full BLiMP
    assert default.blimp_limit == 50 and 1 <= default.warmup_steps < default.steps
    with pytest.raises(ValueError, match="budget must be > 0"):
        plan_for(0)


def tiny_data_root(tmp_path):
    """A data folder laid out as ../shared/data: slices of the real corpora, the real BLiMP."""
    root = tmp_path / "data"
    corpora = root / "corpora"
    shared = require_shared("corpora")
    for rel, n in (("tinyshakespeare/input.txt", 60_000), ("wikitext-2/valid.txt", 60_000),
                   ("wikitext-2/test.txt", 20_000)):
        (corpora / rel).parent.mkdir(parents=True, exist_ok=True)
        (corpora / rel).write_text((shared / rel).read_text(encoding="utf-8")[:n], encoding="utf-8")
    wiki = corpora / "enwiki-sample-gensim"
    wiki.mkdir()
    (wiki / "sample.xml").write_text(
        "<mediawiki><page><title>Tea</title><ns>0</ns><revision><text>"
        + "'''Tea''' is an aromatic [[drink]].\n\n" * 50 + "</text></revision></page></mediawiki>")
    for rel in ("blimp", "babylm-eval"):
        os.symlink(require_shared(rel), root / rel)
    return root


@pytest.mark.shared_data
@pytest.mark.slow
def test_study_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
    from stlm.study.sllama import StudySettings, run_study

    monkeypatch.chdir(tmp_path)  # the data cache goes to ./.stlm_cache
    settings = StudySettings(budget=0.002, out=tmp_path / "out", data_root=tiny_data_root(tmp_path),
                             models=("llama_tied", "sllama"), bpe_vocab=300, progress=False)
    results = run_study(settings, echo=lambda _: None)
    rows = {r["model"]: r for r in results["rows"]}
    assert rows["sllama"]["paper_parameters"] == 2_585_792
    assert rows["llama_tied"]["tied"] and not rows["sllama"]["tied"]
    assert rows["sllama"]["parameters"] < rows["llama_tied"]["parameters"]
    for r in rows.values():
        assert r["steps"] >= 1 and r["tokens"] <= results["plan"]["tokens"]  # a busy machine may cap it
        assert 0 < r["test_bpb"] < 20 and 0 < r["val_bpb"] < 20
        assert r["blimp"]["n"] == 67 and r["blimp_filtered"]["n"] == 67  # one pair per paradigm
        assert set(r["grammar"]["per_tier"]) == {"local", "structural"}
    out = settings.out
    assert json.loads((out / "results.json").read_text())["rows"] == results["rows"]
    table = (out / "results.md").read_text()
    assert "| sllama | all four | no |" in table and (out / "results.png").stat().st_size > 0
    again = run_study(settings, echo=lambda _: None)  # everything is reused, nothing retrained
    assert again["rows"] == results["rows"]
    with pytest.raises(UserError, match="other settings"):
        run_study(StudySettings(**{**settings.__dict__, "budget": 0.004}), echo=lambda _: None)


def test_knob_studies_compare_variants_at_equal_tokens(tmp_path):
    from stlm.study.knobs import STUDY_VARIANTS, variant_config

    for study, variants in STUDY_VARIANTS.items():
        cfgs = {v.name: variant_config(study, v, 1.0, tmp_path, "cpu", None, False) for v in variants}
        students = [c for name, c in cfgs.items() if name != "teacher"]
        assert len({c.train.max_steps for c in students}) == 1  # equal tokens
        plain = [c for c in students if c.model.dropout == 0]
        assert all((c.model, c.data, c.seed) == (plain[0].model, plain[0].data, plain[0].seed) for c in plain)
    sched = {v.name: variant_config("schedule", v, 1.0, tmp_path, "cpu", None, False)
             for v in STUDY_VARIANTS["schedule"]}
    assert sched["wsd_1sqrt"].train.cooldown_shape == "1-sqrt"
    assert sched["dropout_early"].train.dropout_schedule.end == 0.2 and sched["cosine"].model.dropout == 0
    dist = {v.name: variant_config("distill", v, 1.0, tmp_path, "cpu", None, False)
            for v in STUDY_VARIANTS["distill"]}
    assert dist["teacher"].train.max_steps == pytest.approx(3 * dist["student"].train.max_steps, abs=2)
    assert dist["student_distilled"].train.distill.teacher == str((tmp_path / "runs" / "teacher").resolve())
    opt = [variant_config("optimizer", v, 1.0, tmp_path, "cpu", None, False) for v in STUDY_VARIANTS["optimizer"]]
    assert sorted(c.train.optimizer for c in opt) == ["adamw"] * 3 + ["muon"] * 3


def _run_row(seed: int, val: float, blimp: float, local: float) -> dict:
    return {"model": "m", "role": "r", "tied": True, "seed": seed, "parameters": 10, "paper_parameters": 20,
            "tokens": 100, "steps": 2, "train_seconds": 1.0, "val_bpb": val, "test_bpb": val + 1,
            "blimp": {"acc": blimp, "acc_stderr": 0.01, "n": 67}, "blimp_filtered": None,
            "grammar": {"overall": local, "per_tier": {"local": local, "structural": 0.5}}, "run_dir": "x"}


def test_seeds_give_mean_and_sample_spread_per_model():
    from stlm.study.report import format_table
    from stlm.study.seeds import mean_and_spread, study_seeds

    assert study_seeds(1337, 3) == [1337, 1338, 1339]
    one = _run_row(1, 2.0, 0.6, 0.7)
    assert mean_and_spread([one]) is one  # one seed: the run's own row
    row = mean_and_spread([_run_row(1, 2.0, 0.6, 0.7), _run_row(2, 2.2, 0.7, 0.9), _run_row(3, 2.4, 0.8, 0.8)])
    assert row["val_bpb"] == pytest.approx(2.2) and row["spread"]["val_bpb"] == pytest.approx(0.2)
    assert row["test_bpb"] == pytest.approx(3.2) and row["blimp"]["acc"] == pytest.approx(0.7)
    assert row["spread"]["blimp"] == pytest.approx(0.1) and "blimp_filtered" not in row["spread"]
    assert row["grammar"]["per_tier"] == pytest.approx({"local": 0.8, "structural": 0.5})
    assert row["seeds"] == [1, 2, 3] and len(row["per_seed"]) == 3
    plan = {"tokens": 100, "budget": 1, "steps": 2, "batch_size": 1, "context": 50, "blimp_limit": 1,
            "grammar_pairs": 5, "test_tokens": 10}
    table = format_table({"rows": [row], "plan": plan, "seed": 1, "seeds": [1, 2, 3], "bpe_vocab": 300,
                          "paper_vocab": False})
    assert "| 2.2000 ± 0.2000 | 3.2000 ± 0.2000 | 70.0 ± 10.0 | n/a | 80.0 ± 10.0 | 50.0 ± 0.0 |" in table
    assert "seeds 1, 2, 3" in table
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        study_seeds(1337, 0)


@pytest.mark.slow
@pytest.mark.shared_data
def test_study_with_two_seeds_trains_each_seed_and_reports_the_spread(tmp_path, monkeypatch):
    from stlm.study.sllama import StudySettings, run_study

    monkeypatch.chdir(tmp_path)
    settings = StudySettings(budget=0.002, out=tmp_path / "out", data_root=tiny_data_root(tmp_path),
                             models=("llama_tied",), bpe_vocab=300, progress=False, seeds=2)
    results = run_study(settings, echo=lambda _: None)
    (row,) = results["rows"]
    assert results["seeds"] == [1337, 1338] and row["seeds"] == [1337, 1338]
    first, second = row["per_seed"]
    assert first["val_bpb"] != second["val_bpb"]  # another seed: another initialisation and order
    assert row["val_bpb"] == pytest.approx((first["val_bpb"] + second["val_bpb"]) / 2)
    assert row["spread"]["val_bpb"] > 0
    assert (tmp_path / "out" / "runs" / "llama_tied-seed1338" / "summary.json").exists()
    assert "seeds 1337, 1338" in (tmp_path / "out" / "results.md").read_text()


@pytest.mark.slow
@pytest.mark.shared_data
def test_byte_study_runs_end_to_end(tmp_path, monkeypatch):
    from stlm.study.byte import ByteStudySettings, run_byte_study

    monkeypatch.chdir(tmp_path)
    settings = ByteStudySettings(budget=0.005, out=tmp_path / "out", data_root=tiny_data_root(tmp_path),
                                 arms=("bpe_untied", "byte_pooled"), bpe_vocab=300, progress=False, threads=1)
    results = run_byte_study(settings, echo=lambda _: None)
    rows = {r["arm"]: r for r in results["rows"]}
    assert set(rows) == {"bpe_untied", "byte_pooled"}
    assert rows["byte_pooled"]["vocab"] == rows["bpe_untied"]["vocab"] == 300  # no token over 16 bytes
    assert rows["bpe_untied"]["embedding_head_parameters"] == 2 * 300 * 128
    for r in rows.values():
        assert abs(r["train_bytes"] - results["plan"]["train_bytes"]) < 0.5 * results["plan"]["train_bytes"] \
            or r["capped"]
        assert 0 < r["test_bpb"] < 20 and 0 < r["val_bpb"] < 20 and r["blimp"]["n"] == 67
        assert r["memory"]["peak_mb"] > 0 and r["bytes_per_second"] > 0
    assert "| byte_pooled | byte-pooled chunks |" in (settings.out / "results.md").read_text()
    assert (settings.out / "results.png").stat().st_size > 0
