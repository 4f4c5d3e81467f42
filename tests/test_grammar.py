"""The built-in grammar corpus and its minimal-pair suite (BLiMP-style, Warstadt et al., 2020)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from collections import Counter
from itertools import islice

import pytest

from stlm.data.grammar import PARADIGMS, Pair, generate_stories, minimal_pair_suite
from stlm.data.grammar import lexicon as lx
from stlm.data.grammar.generator import STORY_STREAM
from stlm.data.grammar.paradigms import PAIRS_STREAM

AGREEMENT = ("subject_verb_agreement", "agreement_across_pp", "agreement_across_relative_clause",
             "long_distance_agreement")
NUMBER_PARADIGMS = AGREEMENT + ("determiner_noun_agreement", "reflexive_agreement")
SENTENCE = re.compile(r"[A-Z][a-z]*(,? [A-Za-z]+)*[.?]")


def words(sentence: str) -> list[str]:
    return re.findall(r"[A-Za-z]+|[.,?]", sentence.lower())


def sentences(story: str) -> list[str]:
    return re.split(r"(?<=[.?]) ", story)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return list(generate_stories(0, 2000))


@pytest.fixture(scope="module")
def suite() -> list[Pair]:
    return minimal_pair_suite()


@pytest.fixture(scope="module")
def by_paradigm(suite) -> dict[str, list[Pair]]:
    out: dict[str, list[Pair]] = {}
    for p in suite:
        out.setdefault(p.paradigm, []).append(p)
    return out


# ------------------------------------------------------------------------- lexicon lookups
NOUN_NUMBER = {n.sg: "sg" for n in lx.NOUNS} | {n.pl: "pl" for n in lx.NOUNS}
NOUN_CLASS = {n.sg: n.gender for n in lx.NOUNS} | {n.pl: "pl" for n in lx.NOUNS}
REFLEXIVE_CLASS = {lx.PRONOUNS[c][3]: c for c in lx.PRONOUN_CLASSES}
VERBS = lx.INTRANSITIVE + lx.TRANSITIVE
VERB_NUMBER = {v.s: "sg" for v in VERBS} | {v.base: "pl" for v in VERBS} | {
    "is": "sg", "are": "pl", "was": "sg", "were": "pl", "does": "sg", "do": "pl"}
VERB_SWAPS = {frozenset((v.s, v.base)) for v in VERBS + (lx.DO, lx.COPULA)} | {frozenset(("was", "were"))}
TRANSITIVE_FORMS = {f for v in lx.TRANSITIVE for f in (v.base, v.s, v.past)}
CLAUSAL_FORMS = {f for v in lx.CLAUSAL for f in (v.base, v.s, v.past)}  # "says that ..."
WH_VERB_FORMS = {f for v in lx.WH_VERBS for f in (v.base, v.s, v.past)}  # "wonders what ..."
DETERMINERS = {"the", "a", "an", "some", lx.NPI_DETERMINER, *lx.SG_DETERMINERS, *lx.PL_DETERMINERS}


def one_difference(good: list[str], bad: list[str]) -> int:
    assert len(good) == len(bad), (good, bad)
    diffs = [i for i, (a, b) in enumerate(zip(good, bad)) if a != b]
    assert len(diffs) == 1, (good, bad)
    return diffs[0]


def inserted_np(short: list[str], long: list[str]) -> list[str]:
    """`long` is `short` with a noun phrase inserted just before the final punctuation mark."""
    assert long[: len(short) - 1] == short[:-1] and long[-1] == short[-1], (short, long)
    span = long[len(short) - 1: -1]
    assert len(span) >= 2 and span[0] in DETERMINERS and span[-1] in NOUN_NUMBER, span
    return span


# ------------------------------------------------------------------------- the corpus
def test_deterministic_for_a_seed_and_different_across_seeds():
    a = list(generate_stories(3, 50))
    assert a == list(generate_stories(3, 50))
    assert a != list(generate_stories(4, 50))
    assert list(islice(generate_stories(3), 50)) == a  # the infinite stream starts the same


def test_same_text_under_any_hash_seed():
    code = ("import hashlib; from itertools import islice; from stlm.data.grammar import *; "
            "h = hashlib.sha256('|'.join(islice(generate_stories(7), 300)).encode()); "
            "[h.update((p.good + p.bad).encode()) for p in minimal_pair_suite(per_paradigm=20)]; "
            "print(h.hexdigest())")
    digests = set()
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_throughput_at_least_1mb_per_second():
    # CPU time, not wall time: other processes on a busy machine must not fail this smoke check
    stream, n_bytes, start = generate_stories(11), 0, time.process_time()
    while time.process_time() - start < 0.5:
        n_bytes += sum(len(s) for s in islice(stream, 200))
    assert n_bytes / (time.process_time() - start) >= 1e6


def test_plain_ascii_sentences(corpus):
    for story in corpus[:300]:
        assert story.isascii() and "  " not in story and "\n" not in story
        for s in sentences(story):
            assert SENTENCE.fullmatch(s), s


def test_every_lexicon_word_appears(corpus):
    seen = set()
    for story in corpus:
        seen.update(words(story))
    missing = [w for w in lx.all_word_forms() if w not in seen]
    assert not missing


def test_stories_reuse_their_characters(corpus):
    introduced = mentioned_again = with_pronoun = 0
    for story in corpus[:500]:
        for name in re.findall(r"named ([A-Z][a-z]+)", story):
            introduced += 1
            mentioned_again += story.count(name) > 1
        with_pronoun += bool(re.search(r"\b(he|she|it|they|him|her|them)\b", story, re.I))
    assert introduced > 300 and mentioned_again / introduced > 0.8
    assert with_pronoun / 500 > 0.9


def test_phenomena_are_frequent(corpus):
    sents = [s for story in corpus for s in sentences(story)]
    rates = {
        "relative clause": r"\w+ (that|who) \w+",
        "reflexive": r"sel(f|ves)\b",
        "negative polarity item": r"\bany",
        "wh-question": r"^(What|Who) ",
        "clausal complement": r" (" + "|".join(sorted(CLAUSAL_FORMS)) + ") (that|what|who) ",
        "prepositional attractor": r"(s|en|ce) (near|behind|beside|with|under|by) (the|a|an|this|that|these|"
                                   r"those|some|many|two|three|several|every|each|one) ",
    }
    for name, pattern in rates.items():
        rate = sum(bool(re.search(pattern, s)) for s in sents) / len(sents)
        assert 0.03 <= rate <= 0.25, (name, rate)


def test_transitive_verbs_end_a_declarative_only_after_a_filler(corpus):
    gaps = 0
    for story in corpus:
        for s in sentences(story):
            w = words(s)
            if s.endswith(".") and w[-2] in TRANSITIVE_FORMS:
                assert any(a in WH_VERB_FORMS and b in ("what", "who") for a, b in zip(w, w[1:])), s
                gaps += 1
    assert gaps > 100  # "Tom knows what the dog chased." is part of the grammar


def test_bad_arguments_are_rejected():
    with pytest.raises(TypeError, match="seed"):
        next(generate_stories("0"))
    with pytest.raises(ValueError, match="n_stories"):
        next(generate_stories(0, -1))
    with pytest.raises(ValueError, match="per_paradigm"):
        minimal_pair_suite(per_paradigm=0)


# ------------------------------------------------------------------------- the suite
def test_suite_shape_and_stability(suite, by_paradigm):
    assert list(by_paradigm) == list(PARADIGMS)
    assert set(PARADIGMS.values()) == {"local", "structural"}
    for ps in by_paradigm.values():
        assert len(ps) == 200 and all(p.tier == PARADIGMS[p.paradigm] for p in ps)
    assert len({(p.good, p.bad) for p in suite}) == len(suite)
    assert suite == minimal_pair_suite()
    assert suite != minimal_pair_suite(seed=1)
    small = minimal_pair_suite(per_paradigm=30)  # a larger suite extends a smaller one
    assert small == [p for ps in by_paradigm.values() for p in ps[:30]]
    for p in suite:
        assert p.good != p.bad and SENTENCE.fullmatch(p.good) and SENTENCE.fullmatch(p.bad), p


def test_pairs_come_from_their_own_rng_stream():
    assert STORY_STREAM != PAIRS_STREAM
    stories = " ".join(generate_stories(10007, 200))
    goods = [p.good for p in minimal_pair_suite(seed=10007, per_paradigm=20)]
    assert sum(g in stories for g in goods) < len(goods) // 4


@pytest.mark.parametrize("paradigm", AGREEMENT)
def test_agreement_pairs_swap_one_verb_form_after_an_attractor(by_paradigm, paradigm):
    singular_good = 0
    for p in by_paradigm[paradigm]:
        good, bad = words(p.good), words(p.bad)
        i = one_difference(good, bad)
        assert frozenset((good[i], bad[i])) in VERB_SWAPS, p
        number = VERB_NUMBER[good[i]]
        singular_good += number == "sg"
        clause = max((j + 2 for j, w in enumerate(good[:i]) if w in CLAUSAL_FORMS), default=0)
        nouns = [NOUN_NUMBER[w] for w in good[:i] if w in NOUN_NUMBER]
        assert [NOUN_NUMBER[w] for w in good[clause:i] if w in NOUN_NUMBER][0] == number, p  # the subject
        if paradigm != "subject_verb_agreement":
            assert any(n != number for n in nouns), p  # ... agrees across an attractor of the other number
    assert singular_good == len(by_paradigm[paradigm]) // 2


def test_determiner_noun_pairs_swap_the_noun_number(by_paradigm):
    for p in by_paradigm["determiner_noun_agreement"]:
        good, bad = words(p.good), words(p.bad)
        i = one_difference(good, bad)
        assert {NOUN_NUMBER[good[i]], NOUN_NUMBER[bad[i]]} == {"sg", "pl"}, p
        det = next(w for w in reversed(good[:i]) if w in DETERMINERS)
        allowed = lx.PL_DETERMINERS if NOUN_NUMBER[good[i]] == "pl" else lx.SG_DETERMINERS + ("an",)
        assert det in allowed, p


def test_argument_structure_pairs_drop_the_object(by_paradigm):
    for p in by_paradigm["argument_structure"]:
        good, bad = words(p.good), words(p.bad)
        assert bad[-2] in TRANSITIVE_FORMS
        inserted_np(bad, good)


def test_reflexive_pairs_swap_to_the_distractor(by_paradigm):
    for p in by_paradigm["reflexive_agreement"]:
        good, bad = words(p.good), words(p.bad)
        i = one_difference(good, bad)
        classes = [NOUN_CLASS[w] for w in good[:i] if w in NOUN_CLASS]
        assert classes[0] == REFLEXIVE_CLASS[good[i]], p
        assert REFLEXIVE_CLASS[bad[i]] in classes[1:], p


def test_npi_pairs_swap_the_licensor(by_paradigm):
    for p in by_paradigm["npi_licensing"]:
        good, bad = words(p.good), words(p.bad)
        i = one_difference(good, bad)
        assert good[i] == lx.NEGATIVE_ADVERB and bad[i] in lx.ADVERBS, p
        assert any(w.startswith("any") for w in good[i + 1:]), p


def test_filler_gap_pairs_swap_the_filler_for_that(by_paradigm):
    good_has_filler = 0
    for p in by_paradigm["filler_gap"]:
        good, bad = words(p.good), words(p.bad)
        i = one_difference(good, bad)
        assert {good[i], bad[i]} in ({"that", "what"}, {"that", "who"}) and good[i - 1] in WH_VERB_FORMS, p
        gap = good[-2] in TRANSITIVE_FORMS  # the clause ends right after its verb
        assert gap or good[-2] in NOUN_NUMBER, p
        assert (good[i] != "that") == gap, p  # the good sentence has a filler iff its clause has a gap
        good_has_filler += good[i] != "that"
    assert good_has_filler == len(by_paradigm["filler_gap"]) // 2


def shape(sentence: str) -> tuple[str, ...]:
    """Coarse word classes (determiners and adjectives dropped), so a shape stands for many sentences."""
    out = []
    for w in words(sentence):
        c = SHAPE_CLASS.get(w, w)
        if c:
            out.append(c)
    return tuple(out)


def _shape_classes() -> dict[str, str]:
    classes: dict[str, set[str]] = {}
    for v in VERBS + lx.CLAUSAL:
        kind = "VT" if v in lx.TRANSITIVE else "VC" if v in lx.CLAUSAL else "VI"
        for form, tag in ((v.base, "0"), (v.s, "s"), (v.past, "d")):
            classes.setdefault(form, set()).add(kind + tag)
    out = {w: next(iter(c)) if len(c) == 1 else w for w, c in classes.items()}  # "hurt" stays "hurt"
    out |= {w.lower(): "NAME" for w in lx.MALE_NAMES + lx.FEMALE_NAMES}
    out |= {w: "" for kind in ("animal", "thing") for w in lx.ADJECTIVES[kind]}
    out |= {w: "" for w in lx.SG_DETERMINERS + lx.PL_DETERMINERS + ("the", "a", "an", "some")}
    out |= {w: "PREP" for w in lx.NP_PREPOSITIONS} | {"who": "that"}
    out |= {n.sg: "N" for n in lx.NOUNS} | {n.pl: "NS" for n in lx.NOUNS} | {w: "P" for w in lx.PLACES}
    out["that"] = "that"  # a determiner too, but the relativizer matters more
    return out


SHAPE_CLASS = _shape_classes()


def test_good_sentences_have_shapes_the_stories_use(corpus, by_paradigm):
    shapes = {shape(s) for story in corpus for s in sentences(story)}
    found = {name: sum(shape(p.good) in shapes for p in ps) / len(ps) for name, ps in by_paradigm.items()}
    assert min(found.values()) > 0.75, found


# ------------------------------------------------------------------------- n-gram baselines
def ngram_counts(corpus: list[str]) -> tuple[Counter, Counter]:
    uni, bi = Counter(), Counter()
    for story in corpus:
        w = ["<s>"] + words(story)
        uni.update(w)
        bi.update(zip(w, w[1:]))
    return uni, bi


def accuracy(pairs: list[Pair], score) -> float:
    return sum(score(p.good) > score(p.bad) for p in pairs) / len(pairs)


def test_unigram_model_is_at_chance_on_agreement(corpus, by_paradigm):
    uni, _ = ngram_counts(corpus)
    total, vocab = sum(uni.values()), len(uni)

    def score(s: str) -> float:
        return sum(math.log((uni[w] + 1) / (total + vocab)) for w in words(s))

    for name in NUMBER_PARADIGMS:
        assert 0.4 <= accuracy(by_paradigm[name], score) <= 0.6, name


def test_bigram_model_does_not_solve_attractor_agreement(corpus, by_paradigm):
    uni, bi = ngram_counts(corpus)
    vocab = len(uni)

    def score(s: str) -> float:
        w = ["<s>"] + words(s)
        return sum(math.log((bi[a, b] + 0.1) / (uni[a] + 0.1 * vocab)) for a, b in zip(w, w[1:]))

    for name in ("agreement_across_pp", "agreement_across_relative_clause", "long_distance_agreement"):
        assert accuracy(by_paradigm[name], score) < 0.8, name
