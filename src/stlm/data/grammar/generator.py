"""A probabilistic grammar of simple English and short stories drawn from it.

The grammar is a hand-written probabilistic context-free grammar over the lexicon in
`lexicon.py`, with features for number, gender and tense: subjects agree with their verbs,
pronouns and reflexives with their antecedents, determiners with their nouns. Noun phrases
take prepositional phrases and relative clauses (subject and object gaps), so the nearest noun
before a verb often has the other number (an "attractor", Linzen et al., 2016, TACL). A story
introduces 2-3 characters with distinct pronoun classes and refers back to them by name,
definite description or pronoun, in the spirit of TinyStories (Eldan & Li, 2023).

Phrases are lists of words; punctuation marks are words too and are attached when a sentence
is rendered. All draws go through one `random.Random`, so a seed fixes the text exactly.
Transitive verbs are strictly transitive: outside a gap after a wh filler or relativizer
("What did the dog chase?", "Tom knows what the dog chased.", "the cat that the dog chased")
a transitive verb is always followed by its object, so "The dog chased." never occurs.
"""

from __future__ import annotations

import random
from typing import Iterator, NamedTuple, Sequence

from stlm.data.grammar import lexicon as lx

STORY_STREAM = "stlm.grammar/stories/"  # RNG stream of training stories; pairs use another
PRONOUN_P = 0.35  # chance a character already mentioned is referred to by a pronoun

OBJECT_POOLS = {"any": lx.NOUNS, "animate": lx.ANIMATES, "thing": lx.OBJECTS, "food": lx.FOODS}
_VERBS_TAKING = {  # noun kind -> transitive verbs whose object it can be
    kind: tuple(v for v in lx.TRANSITIVE
                if v.obj == "any" or v.obj == ("animate" if kind in ("person", "animal") else "thing")
                or (v.obj == "food" and kind == "food"))
    for kind in ("person", "animal", "thing", "food")
}
_ADVERB_SLOT = lx.ADVERBS + (lx.NEGATIVE_ADVERB,)
_NPI_PRONOUNS = tuple(lx.NPI_PRONOUNS.values())
SENTENCE_MIX = (  # StoryWriter method -> percent of body sentences
    ("plain", 16), ("modified", 20), ("reflexive", 11), ("negative", 9), ("adverb", 11),
    ("wh_question", 8), ("yes_no_question", 6), ("coordination", 7), ("embedded", 8), ("fronted", 4),
)
_SENTENCE_KINDS = tuple(name for name, percent in SENTENCE_MIX for _ in range(percent))


class NP(NamedTuple):
    """A noun phrase: its words, pronoun class (m | f | n | pl) and the kind of its head noun."""

    words: list[str]
    cls: str
    kind: str


class Character(NamedTuple):
    """A story character: a name, or a noun referred to as "the <noun>"."""

    cls: str
    kind: str
    noun: lx.Noun
    name: str | None


def agree(verb: lx.Verb, cls: str, tense: str) -> str:
    """The form of `verb` for a subject of pronoun class `cls` in `tense` (present | past)."""
    if tense == "past":
        if verb is lx.COPULA and cls == "pl":
            return lx.PAST_PLURAL_COPULA
        return verb.past
    return verb.base if cls == "pl" else verb.s


def wh_word(kind: str) -> str:
    """The filler that stands for a noun of this kind."""
    return "who" if kind in ("person", "animal") else "what"


def render(words: Sequence[str]) -> str:
    """Words -> a sentence: single spaces, punctuation attached, first letter capitalised."""
    s = " ".join(words).replace(" .", ".").replace(" ?", "?").replace(" ,", ",")
    return s[0].upper() + s[1:]


class Grammar:
    """Draws phrases and sentences from one RNG. Methods return word lists (or NPs)."""

    def __init__(self, rng: random.Random):
        self.random = rng.random

    def pick(self, seq: Sequence):
        return seq[int(self.random() * len(seq))]

    # ------------------------------------------------------------------ noun phrases
    def det_np(self, noun: lx.Noun, plural: bool, det: str | None = None, adj_p: float = 0.3) -> NP:
        """[det] [adjective] noun, with "a" -> "an" before a vowel."""
        if det is None:
            det = self.pick(lx.PL_TEXT_DETERMINERS if plural else lx.SG_TEXT_DETERMINERS)
        words = [det]
        if adj_p and self.random() < adj_p:
            words.append(self.pick(lx.ADJECTIVES[noun.kind]))
        words.append(noun.pl if plural else noun.sg)
        if det == "a" and words[1][0] in lx.VOWELS:
            words[0] = "an"
        return NP(words, "pl" if plural else noun.gender, noun.kind)

    def simple_np(self, pool: Sequence[lx.Noun] = lx.NOUNS, plural: bool | None = None,
                  adj_p: float = 0.3) -> NP:
        if plural is None:
            plural = self.random() < 0.5
        return self.det_np(self.pick(pool), plural, adj_p=adj_p)

    def with_pp(self, head: NP, attractor: NP | None = None) -> NP:
        """head + preposition + NP: "the dog near the cats"."""
        pp = attractor or self.simple_np(adj_p=0.2)
        return NP(head.words + [self.pick(lx.NP_PREPOSITIONS)] + pp.words, head.cls, head.kind)

    def relativizer(self, head: NP) -> str:
        return "who" if head.kind == "person" and self.random() < 0.5 else "that"

    def with_subject_rc(self, head: NP, tense: str, obj: NP | None = None) -> NP:
        """head + that + verb(agreeing with head) + object: "the dog that chases the cats"."""
        if head.kind not in ("person", "animal"):  # things do not act: "the ball that is red"
            rc = [agree(lx.COPULA, head.cls, tense), self.pick(lx.ADJECTIVES[head.kind])]
        elif obj is None and self.random() < 0.3:
            rc = [agree(self.pick(lx.INTRANSITIVE), head.cls, tense)]
        else:
            verb, obj = self.verb_and_object(obj)
            rc = [agree(verb, head.cls, tense)] + obj.words
        return NP(head.words + [self.relativizer(head)] + rc, head.cls, head.kind)

    def with_object_rc(self, head: NP, tense: str, subj: NP | None = None) -> NP:
        """head + that + subject + verb(agreeing with that subject) + gap: "the dog that the cats chase"."""
        if subj is None:
            subj = self.simple_np(lx.ANIMATES, adj_p=0.2)
        verb = self.pick(_VERBS_TAKING[head.kind])
        words = head.words + [self.relativizer(head)] + subj.words + [agree(verb, subj.cls, tense)]
        return NP(words, head.cls, head.kind)

    def modified_np(self, tense: str) -> NP:
        """A subject with a PP, a subject or object RC, or an object RC whose own subject has a PP."""
        head = self.simple_np(lx.ANIMATES, adj_p=0.2)
        r = self.random()
        if r < 0.35:
            return self.with_pp(head)
        if r < 0.6:
            return self.with_subject_rc(head, tense)
        if r < 0.85:
            return self.with_object_rc(head, tense)
        inner = self.with_pp(self.simple_np(lx.ANIMATES, adj_p=0.0))
        return self.with_object_rc(head, tense, inner)

    # ------------------------------------------------------------------ verb phrases
    def verb_and_object(self, obj: NP | None = None) -> tuple[lx.Verb, NP]:
        """A transitive verb and an object it can take (or a verb fitting the given object)."""
        if obj is not None:
            return self.pick(_VERBS_TAKING[obj.kind]), obj
        verb = self.pick(lx.TRANSITIVE)
        return verb, self.simple_np(OBJECT_POOLS[verb.obj])

    def place_pp(self) -> list[str]:
        return [self.pick(lx.PLACE_PREPOSITIONS), "the", self.pick(lx.PLACES)]

    def vp(self, cls: str, kind: str, tense: str) -> list[str]:
        """An agreeing verb phrase: transitive, intransitive (+ place), or copula + adjective."""
        r = self.random()
        if r < 0.45:
            verb, obj = self.verb_and_object()
            return [agree(verb, cls, tense)] + obj.words
        if r < 0.8:
            words = [agree(self.pick(lx.INTRANSITIVE), cls, tense)]
            return words + self.place_pp() if self.random() < 0.35 else words
        return [agree(lx.COPULA, cls, tense), self.pick(lx.ADJECTIVES[kind])]

    def complement(self, subj: NP, tense: str, clause: list[str]) -> list[str]:
        """subject + say/think/know/... + that + clause: "The girls say that the dog runs"."""
        return subj.words + [agree(self.pick(lx.THAT_VERBS), subj.cls, tense), "that"] + clause

    def reflexive_vp(self, cls: str, tense: str) -> list[str]:
        return [agree(self.pick(lx.REFLEXIVE_VERBS), cls, tense), lx.PRONOUNS[cls][3]]

    def npi_object(self, verb: lx.Verb) -> list[str]:
        """A negative polarity item: any + noun, anyone or anything (only under "not" or "never")."""
        if self.random() < 0.3:
            if verb.obj == "any":
                return [self.pick(_NPI_PRONOUNS)]
            return [lx.NPI_PRONOUNS["animate" if verb.obj == "animate" else "thing"]]
        return self.det_np(self.pick(OBJECT_POOLS[verb.obj]), self.random() < 0.7, lx.NPI_DETERMINER,
                           adj_p=0.2).words

    def negative_vp(self, cls: str, tense: str) -> list[str]:
        """do/does/did not + verb, usually with a negative polarity item as its object."""
        words = [agree(lx.DO, cls, tense), "not"]
        if self.random() < 0.2:
            return words + [self.pick(lx.INTRANSITIVE).base]
        verb, obj = self.verb_and_object()
        return words + [verb.base] + (self.npi_object(verb) if self.random() < 0.7 else obj.words)

    def adverb_vp(self, cls: str, tense: str) -> list[str]:
        """never/often/always/sometimes + verb phrase; only "never" licenses "any".

        Every adverb is equally frequent and is followed by the same verb phrases, except that
        "never" trades some objects for negative polarity items: only that link is learnable.
        """
        adverb = self.pick(_ADVERB_SLOT)
        if self.random() < 0.3:
            return [adverb, agree(self.pick(lx.INTRANSITIVE), cls, tense)]
        verb, obj = self.verb_and_object()
        if adverb == lx.NEGATIVE_ADVERB and self.random() < 0.6:
            return [adverb, agree(verb, cls, tense)] + self.npi_object(verb)
        return [adverb, agree(verb, cls, tense)] + obj.words


class StoryWriter(Grammar):
    """Writes one story: introduce 2-3 characters, then mostly sentences about them."""

    def character(self, cls: str) -> Character:
        if cls == "pl":
            noun = self.pick(lx.ANIMALS if self.random() < 0.6 else lx.PERSONS)
            return Character("pl", noun.kind, noun, None)
        if cls == "n":
            noun = self.pick(lx.ANIMALS)
            return Character("n", "animal", noun, None)
        noun = self.pick(lx.MEN if cls == "m" else lx.WOMEN)
        named = self.random() < 0.6
        name = self.pick(lx.MALE_NAMES if cls == "m" else lx.FEMALE_NAMES) if named else None
        return Character(cls, "person", noun, name)

    def ref(self, c: Character, role: int = 0) -> NP:
        """How the story mentions `c`: pronoun (role 0 subject, 1 object), name or "the <noun>"."""
        if c.cls in self.mentioned and self.random() < PRONOUN_P:
            return NP([lx.PRONOUNS[c.cls][role]], c.cls, c.kind)
        self.mentioned.add(c.cls)
        if c.name:
            return NP([c.name], c.cls, c.kind)
        return NP(["the", c.noun.pl if c.cls == "pl" else c.noun.sg], c.cls, c.kind)

    def intro(self, c: Character, first: bool) -> list[str]:
        """Introduce a character: There was a girl named Lily. / Lily had a dog. / There were two cats."""
        there = ["there", agree(lx.COPULA, c.cls, self.tense)]
        owner = next((o for o in self.cast if o.name and o.cls in self.mentioned), None)
        if c.cls == "pl":
            np = [self.pick(("two", "three", "some", "many"))]
            if self.random() < 0.4:
                np.append(self.pick(lx.ADJECTIVES[c.kind]))
            np.append(c.noun.pl)
        else:
            np = self.det_np(c.noun, False, "a", adj_p=0.6).words
        if c.name:
            words = there + np + ["named", c.name]
        elif owner and self.random() < 0.6:
            words = [owner.name, agree(lx.HAVE, owner.cls, self.tense)] + np
        else:
            words = there + np
        self.mentioned.add(c.cls)
        if first and self.tense == "past" and self.random() < 0.5:
            words = ["once", "upon", "a", "time", ","] + words
        return words + ["."]

    def subject(self) -> NP:
        """A character (usually) or a new noun phrase, sometimes with a PP or relative clause."""
        if self.random() < 0.7:
            return self.ref(self.pick(self.cast))
        if self.random() < 0.5:
            return self.modified_np(self.tense)
        return self.simple_np(lx.ANIMATES)

    def object_for(self, verb: lx.Verb, subj: NP) -> NP:
        """Another character when the verb takes people/animals, else a (possessed) thing."""
        others = [c for c in self.cast if c.cls != subj.cls]
        if verb.obj in ("any", "animate") and others and self.random() < 0.5:
            return self.ref(self.pick(others), role=1)
        pool = OBJECT_POOLS["thing" if verb.obj in ("any", "thing") else verb.obj]
        if self.random() < 0.15:
            owner = self.pick(self.cast)
            noun, plural = self.pick(pool), self.random() < 0.4
            return self.det_np(noun, plural, lx.PRONOUNS[owner.cls][2])
        np = self.simple_np(pool)
        return self.with_subject_rc(np, self.tense) if self.random() < 0.1 else np

    def sentence(self) -> list[list[str]]:
        """One body sentence (or a question and its answer), as word lists."""
        return getattr(self, self.pick(_SENTENCE_KINDS))()

    def plain(self) -> list[list[str]]:
        s = self.subject()
        if self.random() < 0.5:
            verb = self.pick(lx.TRANSITIVE)
            return [s.words + [agree(verb, s.cls, self.tense)] + self.object_for(verb, s).words + ["."]]
        return [s.words + self.vp(s.cls, s.kind, self.tense) + ["."]]

    def modified(self) -> list[list[str]]:
        """A subject with a PP or relative clause: agreement across an attractor."""
        s = self.modified_np(self.tense)
        return [s.words + self.vp(s.cls, s.kind, self.tense) + ["."]]

    def embedded(self) -> list[list[str]]:
        """Tom knows that the dogs near the cat run. / Tom wonders what the dogs chased."""
        subj = self.ref(self.pick(self.cast)) if self.random() < 0.6 else self.simple_np(lx.PERSONS)
        r = self.random()
        if r < 0.3:  # an embedded question: a wh filler and an object gap
            inner = self.question_subject()
            verb, obj = self.verb_and_object()
            matrix = agree(self.pick(lx.WH_VERBS), subj.cls, self.tense)
            clause = inner.words + [agree(verb, inner.cls, self.tense)]
            return [subj.words + [matrix, wh_word(obj.kind)] + clause + ["."]]
        if r < 0.5:
            inner = self.with_pp(self.simple_np(lx.ANIMATES, adj_p=0.2))
        else:
            inner = self.modified_np(self.tense) if r < 0.7 else self.simple_np(lx.ANIMATES)
        return [self.complement(subj, self.tense, inner.words + self.vp(inner.cls, inner.kind, self.tense))
                + ["."]]

    def fronted(self) -> list[list[str]]:
        """In the park, the dogs run. (the first noun is not the subject)"""
        s = self.subject()
        return [self.place_pp() + [","] + s.words + self.vp(s.cls, s.kind, self.tense) + ["."]]

    def coordination(self) -> list[list[str]]:
        """A plural subject of two noun phrases, or two verb phrases."""
        a, t = self.ref(self.pick(self.cast)), self.tense
        if self.random() < 0.6:
            b = self.simple_np(lx.ANIMATES)
            return [a.words + ["and"] + b.words + self.vp("pl", a.kind, t) + ["."]]
        return [a.words + self.vp(a.cls, a.kind, t) + ["and"] + self.vp(a.cls, a.kind, t) + ["."]]

    def reflexive(self) -> list[list[str]]:
        s = self.subject() if self.random() < 0.5 else self.modified_np(self.tense)
        return [s.words + self.reflexive_vp(s.cls, self.tense) + ["."]]

    def negative(self) -> list[list[str]]:
        s = self.subject()
        return [s.words + self.negative_vp(s.cls, self.tense) + ["."]]

    def adverb(self) -> list[list[str]]:
        s = self.subject()
        return [s.words + self.adverb_vp(s.cls, self.tense) + ["."]]

    def question_subject(self) -> NP:
        return self.ref(self.pick(self.cast)) if self.random() < 0.6 else self.simple_np(lx.ANIMATES)

    def wh_question(self) -> list[list[str]]:
        """What/Who did X see? X saw Y."""
        subj = self.question_subject()
        verb = self.pick(lx.TRANSITIVE)
        obj = self.object_for(verb, subj)
        q = [wh_word(obj.kind), agree(lx.DO, subj.cls, self.tense)] + subj.words + [verb.base, "?"]
        answer = [lx.PRONOUNS[subj.cls][0], agree(verb, subj.cls, self.tense)] + obj.words + ["."]
        return [q, answer]

    def yes_no_question(self) -> list[list[str]]:
        """Did X see Y? Yes, X did. / No, X did not."""
        subj = self.question_subject()
        verb = self.pick(lx.TRANSITIVE)
        do = agree(lx.DO, subj.cls, self.tense)
        q = [do] + subj.words + [verb.base] + self.object_for(verb, subj).words + ["?"]
        answer = ["yes", ",", lx.PRONOUNS[subj.cls][0], do]
        if self.random() < 0.5:
            answer = ["no", ",", lx.PRONOUNS[subj.cls][0], do, "not"]
        return [q, answer + ["."]]

    def story(self) -> str:
        self.tense = "past" if self.random() < 0.5 else "present"
        classes = list(lx.PRONOUN_CLASSES)
        self.cast = []
        for _ in range(2 if self.random() < 0.5 else 3):
            self.cast.append(self.character(classes.pop(int(self.random() * len(classes)))))
        self.mentioned: set[str] = set()  # pronoun classes of characters already mentioned
        sentences: list[list[str]] = []
        if self.random() < 0.4:  # open on the scene, as a pair's sentence opens a document
            s = self.modified_np(self.tense) if self.random() < 0.5 else self.simple_np(lx.ANIMATES)
            sentences.append(s.words + self.vp(s.cls, s.kind, self.tense) + ["."])
        for i, c in enumerate(self.cast):
            sentences.append(self.intro(c, first=i == 0 and not sentences))
        for _ in range(5 + int(self.random() * 6)):
            sentences += self.sentence()
        if self.random() < 0.4:
            a, b = self.cast[0], self.cast[1]
            end = ["in", "the", "end", ","] + self.ref(a).words + ["and"] + self.ref(b).words
            sentences.append(end + [agree(lx.COPULA, "pl", self.tense), "happy", "."])
        return " ".join(render(s) for s in sentences)


def generate_stories(seed: int, n_stories: int | None = None) -> Iterator[str]:
    """Stories from the grammar, one document each; infinite when `n_stories` is None.

    The same seed always gives the same stories (on any Python, any PYTHONHASHSEED). Training
    text comes from the "stories" RNG stream; `minimal_pair_suite` draws from a separate
    "pairs" stream, so no seed makes the two share random draws.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if n_stories is not None and (not isinstance(n_stories, int) or n_stories < 0):
        raise ValueError(f"n_stories must be a non-negative int or None, got {n_stories!r}")
    writer = StoryWriter(random.Random(f"{STORY_STREAM}{seed}"))
    i = 0
    while n_stories is None or i < n_stories:
        yield writer.story()
        i += 1
