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
