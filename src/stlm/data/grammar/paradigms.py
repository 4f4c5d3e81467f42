"""Minimal pairs from the built-in grammar: the BLiMP idea (Warstadt et al., 2020, TACL) on our own
grammar, so a model trained on `generate_stories` can be tested on exactly the phenomena it saw.

A pair is a grammatical sentence and an ungrammatical one that differ only where the paradigm
says: agreement pairs swap one verb form ("runs"/"run"), determiner pairs one noun form,
reflexive pairs one reflexive, NPI pairs the licensor ("never") for an adverb that is as
frequent and takes the same verb phrases; argument-structure pairs drop the object noun phrase;
filler-gap pairs swap a wh filler for "that" before a clause with or without a gap.
Half of each number-agreement paradigm has the singular form correct and half the plural, so
word frequencies alone score near chance. Good sentences are built with the same phrase
builders as the training stories, so they are sentences the grammar generates.

Pairs come from "pairs" RNG streams (one per paradigm), stories from the "stories" stream, so
no seed makes the two share random draws.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from stlm.config.schema import EvalConfig
from stlm.data.grammar import lexicon as lx
from stlm.data.grammar.generator import OBJECT_POOLS, NP, Grammar, agree, render, wh_word

PAIRS_STREAM = "stlm.grammar/pairs/"
_REFLEXIVE_CASES = tuple((a, b) for a in lx.PRONOUN_CLASSES for b in lx.PRONOUN_CLASSES if a != b)
_SINGULAR_POOLS = {"m": lx.MEN, "f": lx.WOMEN, "n": lx.ANIMALS}
_WH_AND_THAT_VERBS = tuple(v for v in lx.WH_VERBS if v in lx.THAT_VERBS)  # know, forget


@dataclass(frozen=True)
class Pair:
    paradigm: str
    tier: str  # local | structural
    good: str
    bad: str


Words = list[str]


def _other_number(cls: str) -> str:
    return "n" if cls == "pl" else "pl"


def _name(g: Grammar) -> NP:
    if g.random() < 0.5:
        return NP([g.pick(lx.MALE_NAMES)], "m", "person")
    return NP([g.pick(lx.FEMALE_NAMES)], "f", "person")


def _agreement_pair(g: Grammar, subject: Callable[[bool, str], NP], plural: bool) -> tuple[Words, Words]:
    """subject + verb phrase; the bad sentence has the main verb in the other number."""
    tense = "past" if g.random() < 0.2 else "present"  # past tense only shows on was/were
    subj = subject(plural, tense)
    r = g.random()
    if tense == "past" or r < 0.2:
        verb, rest = lx.COPULA, [g.pick(lx.ADJECTIVES[subj.kind])]
    elif r < 0.55:
        verb, obj = g.verb_and_object()
        rest = obj.words
    else:
        verb, rest = g.pick(lx.INTRANSITIVE), (g.place_pp() if g.random() < 0.3 else [])
    good = subj.words + [agree(verb, subj.cls, tense)] + rest + ["."]
    bad = subj.words + [agree(verb, _other_number(subj.cls), tense)] + rest + ["."]
    return good, bad


def subject_verb_agreement(g: Grammar, i: int) -> tuple[Words, Words]:
    """The dogs run. / *The dogs runs."""
    return _agreement_pair(g, lambda pl, t: g.simple_np(lx.ANIMATES, pl), plural=i % 2 == 1)


def agreement_across_pp(g: Grammar, i: int) -> tuple[Words, Words]:
    """The dog near the cats runs. / *The dog near the cats run."""
    def subject(plural: bool, tense: str) -> NP:
        return g.with_pp(g.simple_np(lx.ANIMATES, plural, 0.2), g.simple_np(lx.NOUNS, not plural, 0.2))
    return _agreement_pair(g, subject, plural=i % 2 == 1)


def agreement_across_relative_clause(g: Grammar, i: int) -> tuple[Words, Words]:
    """The dog that chases the cats runs. / The dog that the cats chase runs. (*run)"""
    def subject(plural: bool, tense: str) -> NP:
        head = g.simple_np(lx.ANIMATES, plural, 0.2)
        if (i // 2) % 2:
            return g.with_object_rc(head, tense, g.simple_np(lx.ANIMATES, not plural, 0.2))
        return g.with_subject_rc(head, tense, g.simple_np(lx.NOUNS, not plural, 0.2))
    return _agreement_pair(g, subject, plural=i % 2 == 1)


def long_distance_agreement(g: Grammar, i: int) -> tuple[Words, Words]:
    """Nested clauses: The dog that the cats near the boy chase runs. / The girls know that the dog
    near the cats runs. (*run: the verb agrees with the subject of its own clause)"""
    def subject(plural: bool, tense: str) -> NP:
        """Everything before the verb, as an NP with the number of the verb's subject."""
        if (i // 2) % 2:
            inner = g.with_pp(g.simple_np(lx.ANIMATES, plural, 0.2))
            matrix = g.simple_np(lx.PERSONS, not plural, 0.2)
            return NP(g.complement(matrix, tense, inner.words), inner.cls, inner.kind)
        inner = g.with_pp(g.simple_np(lx.ANIMATES, not plural, 0.0))
        return g.with_object_rc(g.simple_np(lx.ANIMATES, plural, 0.2), tense, inner)
    return _agreement_pair(g, subject, plural=i % 2 == 1)


def determiner_noun_agreement(g: Grammar, i: int) -> tuple[Words, Words]:
    """Tom saw these dogs. / *Tom saw these dog. (number-marked determiners only)"""
    plural = i % 2 == 1
    subj = g.simple_np(lx.ANIMATES) if g.random() < 0.6 else _name(g)
    verb = g.pick(lx.TRANSITIVE)
    noun = g.pick(OBJECT_POOLS[verb.obj])
    obj = g.det_np(noun, plural, g.pick(lx.PL_DETERMINERS if plural else lx.SG_DETERMINERS))
    head = subj.words + [agree(verb, subj.cls, "past" if g.random() < 0.5 else "present")] + obj.words[:-1]
    return head + [obj.words[-1], "."], head + [noun.sg if plural else noun.pl, "."]


def argument_structure(g: Grammar, i: int) -> tuple[Words, Words]:
    """The dog chased the cat. / *The dog chased. (transitive verbs always take an object)"""
    subj = g.simple_np(lx.ANIMATES, i % 2 == 1)
    verb = g.pick(lx.TRANSITIVE)
    # "the" + noun: the most expected object, so its own surprisal hides the verb's need for it least
    obj = g.det_np(g.pick(OBJECT_POOLS[verb.obj]), g.random() < 0.5, "the", adj_p=0.0)
    head = subj.words + [agree(verb, subj.cls, "past" if g.random() < 0.5 else "present")]
    return head + obj.words + ["."], head + ["."]


def reflexive_agreement(g: Grammar, i: int) -> tuple[Words, Words]:
    """The boy near the girls hurt himself. / *... hurt themselves. (the distractor's reflexive)"""
    good_cls, bad_cls = _REFLEXIVE_CASES[i % len(_REFLEXIVE_CASES)]

    def np_of(cls: str) -> NP:
        if cls == "pl":
            return g.simple_np(lx.ANIMATES, True, 0.2)
        return g.det_np(g.pick(_SINGULAR_POOLS[cls]), False, adj_p=0.2)

    head, distractor = np_of(good_cls), np_of(bad_cls)
    r = g.random()
    if r < 0.5:
        subj = g.with_pp(head, distractor)
    elif r < 0.75:
        subj = g.with_subject_rc(head, "past", distractor)
    else:
        subj = g.with_object_rc(head, "past", distractor)
    verb = agree(g.pick(lx.REFLEXIVE_VERBS), good_cls, "past")
    return (subj.words + [verb, lx.PRONOUNS[good_cls][3], "."],
            subj.words + [verb, lx.PRONOUNS[bad_cls][3], "."])


def npi_licensing(g: Grammar, i: int) -> tuple[Words, Words]:
    """The boy never saw any dogs. / *The boy often saw any dogs."""
    tense = "past" if g.random() < 0.5 else "present"
    subj = g.simple_np(lx.ANIMATES, i % 2 == 1)
    verb = g.pick(lx.TRANSITIVE)
    rest = [agree(verb, subj.cls, tense)] + g.npi_object(verb) + ["."]
    return subj.words + [lx.NEGATIVE_ADVERB] + rest, subj.words + [g.pick(lx.ADVERBS)] + rest


def filler_gap(g: Grammar, i: int) -> tuple[Words, Words]:
    """A wh filler needs a gap and a gap needs a filler; the pair swaps "what"/"who" and "that"
    (BLiMP's wh_vs_that). Tom knows what the girl saw. / *Tom knows that the girl saw.
    Tom knows that the girl saw the cat. / *Tom knows what the girl saw the cat."""
    tense = "past" if g.random() < 0.5 else "present"
    matrix = g.simple_np(lx.PERSONS, adj_p=0.2) if g.random() < 0.6 else _name(g)
    subj, (verb, obj) = g.simple_np(lx.ANIMATES, adj_p=0.2), g.verb_and_object()
    clause, wh = subj.words + [agree(verb, subj.cls, tense)], wh_word(obj.kind)
    head = matrix.words + [agree(g.pick(_WH_AND_THAT_VERBS), matrix.cls, tense)]
    if i % 2 == 0:  # a gap: the filler is required
        return head + [wh] + clause + ["."], head + ["that"] + clause + ["."]
    return head + ["that"] + clause + obj.words + ["."], head + [wh] + clause + obj.words + ["."]


_TABLE: tuple[tuple[str, str, Callable[[Grammar, int], tuple[Words, Words]]], ...] = (
    ("subject_verb_agreement", "local", subject_verb_agreement),
    ("determiner_noun_agreement", "local", determiner_noun_agreement),
    ("argument_structure", "local", argument_structure),
    ("agreement_across_pp", "structural", agreement_across_pp),
    ("agreement_across_relative_clause", "structural", agreement_across_relative_clause),
    ("long_distance_agreement", "structural", long_distance_agreement),
    ("reflexive_agreement", "structural", reflexive_agreement),
    ("npi_licensing", "structural", npi_licensing),
    ("filler_gap", "structural", filler_gap),
)
PARADIGMS: dict[str, str] = {name: tier for name, tier, _ in _TABLE}  # name -> tier, display order
_EVAL = EvalConfig()


def minimal_pair_suite(seed: int = _EVAL.pairs_seed, per_paradigm: int = _EVAL.pairs_per_paradigm
                       ) -> list[Pair]:
    """`per_paradigm` distinct pairs for each paradigm in PARADIGMS order; the same for a seed
    (defaults: `EvalConfig`, the one statement of the evaluation suite's seed and size)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if not isinstance(per_paradigm, int) or per_paradigm < 1:
        raise ValueError(f"per_paradigm must be a positive int, got {per_paradigm!r}")
    suite: list[Pair] = []
    for name, tier, build in _TABLE:  # one stream per paradigm: a larger suite extends a smaller one
        g = Grammar(random.Random(f"{PAIRS_STREAM}{seed}/{name}"))
        seen: set[tuple[str, str]] = set()
        for i in range(per_paradigm):
            for _ in range(1000):
                good, bad = (render(w) for w in build(g, i))
                if (good, bad) not in seen:
                    break
            else:
                raise RuntimeError(f"paradigm {name} ran out of distinct pairs; ask for fewer per_paradigm")
            seen.add((good, bad))
            suite.append(Pair(name, tier, good, bad))
    return suite
