"""The lexicon of the built-in grammar: a few hundred English words with their features.

Tables are tuples and insertion-ordered dicts (no set is ever iterated), so what the generator
draws depends only on its seed, never on PYTHONHASHSEED. Nouns carry number forms and a
pronoun class ("m", "f", "n"; plurals are "pl"); verbs carry base, third-person-singular and
past forms; transitive verbs name the class of object they take and whether a reflexive
object makes sense.
"""

from __future__ import annotations

from typing import NamedTuple


class Noun(NamedTuple):
    sg: str
    pl: str
    gender: str  # pronoun class of the singular: m | f | n
    kind: str  # person | animal | thing | food


class Verb(NamedTuple):
    base: str  # plural present, and after do/does/did
    s: str  # third person singular present
    past: str
    obj: str = ""  # transitive: animate | thing | food | any; clausal: that | wh | that+wh
    reflexive: bool = False  # "X <verb> himself" makes sense


def _nouns(kind: str, gender: str, spec: str) -> tuple[Noun, ...]:
    """Nouns from a spec like "dog mouse/mice": regular "-s" plurals unless given after a slash."""
    out = []
    for item in spec.split():
        sg, _, pl = item.partition("/")
        out.append(Noun(sg, pl or sg + "s", gender, kind))
    return tuple(out)


def _verbs(spec: str, obj: str = "", reflexive: bool = False) -> tuple[Verb, ...]:
    """Verbs from a spec like "run/runs/ran walk": a bare stem gets regular "-s" and "-ed" forms."""
    out = []
    for item in spec.split():
        forms = item.split("/")
        if len(forms) == 1:
            forms = [item, item + "s", item + ("d" if item.endswith("e") else "ed")]
        out.append(Verb(*forms, obj=obj, reflexive=reflexive))
    return tuple(out)


MEN = _nouns("person", "m", "boy man/men king prince/princes father brother uncle son wizard/wizards "
             "knight grandpa")
WOMEN = _nouns("person", "f", "girl woman/women queen princess/princesses mother sister aunt daughter "
               "witch/witches lady/ladies grandma")
ANIMALS = _nouns("animal", "n", "dog cat bird horse cow pig fox/foxes mouse/mice rabbit duck frog bear "
                 "wolf/wolves lion monkey owl goat bee snake tiger puppy/puppies kitten hen turtle "
                 "elephant squirrel bunny/bunnies dragon pony/ponies")
THINGS = _nouns("thing", "n", "ball box/boxes car book hat toy boat cup key rock stick chair table shoe "
                "kite bell drum coat sock bottle picture letter bag basket balloon doll flower "
                "leaf/leaves shell ring spoon blanket")
FOODS = _nouns("food", "n", "cake apple cookie egg carrot pie sandwich/sandwiches banana cherry/cherries "
               "berry/berries pear peach/peaches")
PERSONS = MEN + WOMEN
ANIMATES = PERSONS + ANIMALS
OBJECTS = THINGS + FOODS
NOUNS = ANIMATES + OBJECTS

PLACES = tuple("park garden forest river lake hill beach farm field house school town kitchen yard "
               "street shop castle pond barn cave village meadow".split())
MALE_NAMES = tuple("Tom Ben Sam Jack Max Leo Tim Bob Dan Joe Nick Paul Luke Adam Peter Oscar Finn Noah "
                   "Henry Jake".split())
FEMALE_NAMES = tuple("Mary Lily Anna Emma Lucy Sue Kate Mia Zoe Amy Ella Rose Grace Jane Sara Ruby Ivy "
                     "Chloe Alice Nora".split())

INTRANSITIVE = _verbs("run/runs/ran jump sleep/sleeps/slept sing/sings/sang dance swim/swims/swam play "
                      "laugh cry/cries/cried smile walk sit/sits/sat fall/falls/fell hop/hops/hopped wait "
                      "shout rest sneeze yawn giggle dream cough")
HAVE = Verb("have", "has", "had", obj="thing")
TRANSITIVE = (
    _verbs("see/sees/saw like love find/finds/found watch/watches/watched", "any", reflexive=True)
    + _verbs("want hear/hears/heard remember touch/touches/touched", "any") + (HAVE,)
    + _verbs("help tickle hurt/hurts/hurt wash/washes/washed scratch/scratches/scratched dry/dries/dried "
             "hug/hugs/hugged", "animate", reflexive=True)
    + _verbs("chase visit thank call greet feed/feeds/fed follow kiss/kisses/kissed", "animate")
    + _verbs("kick push/pushes/pushed carry/carries/carried hold/holds/held bring/brings/brought "
             "take/takes/took throw/throws/threw catch/catches/caught fix/fixes/fixed grab/grabs/grabbed "
             "lift drop/drops/dropped paint buy/buys/bought lose/loses/lost", "thing")
    + _verbs("eat/eats/ate bake", "food")
)
REFLEXIVE_VERBS = tuple(v for v in TRANSITIVE if v.reflexive)
# Verbs taking a clause: "says that the dog ran" (that), "wonders what the dog chased" (wh), or both.
CLAUSAL = (_verbs("say/says/said think/thinks/thought hope", "that")
           + _verbs("know/knows/knew forget/forgets/forgot", "that+wh") + _verbs("wonder", "wh"))
THAT_VERBS = tuple(v for v in CLAUSAL if "that" in v.obj)
WH_VERBS = tuple(v for v in CLAUSAL if "wh" in v.obj)
COPULA = Verb("are", "is", "was")  # past plural "were" is special-cased by the generator
PAST_PLURAL_COPULA = "were"
DO = Verb("do", "does", "did")

_FEELINGS = tuple("happy sad tired hungry brave kind scared sleepy angry silly clever lazy friendly funny "
                  "busy shy proud grumpy".split())
_SIZES = ("big", "small", "little", "old", "pretty")
_COLOURS = ("red", "blue", "green", "yellow", "pink", "brown", "black", "white")
ADJECTIVES = {  # noun kind -> adjectives that fit it
    "person": _FEELINGS + _SIZES + ("wet", "dirty", "clean"),
    "animal": _FEELINGS + _SIZES + _COLOURS + ("soft", "wet", "dirty", "clean"),
    "thing": _SIZES + _COLOURS + ("soft", "shiny", "heavy", "dirty", "clean", "wet", "warm"),
}
ADJECTIVES["food"] = ADJECTIVES["thing"]

SG_DETERMINERS = ("a", "this", "that", "every", "one", "each")  # number-marked: used in pairs
PL_DETERMINERS = ("these", "those", "many", "two", "three", "several")
# Determiners in running text: "the" dominates, as in English.
SG_TEXT_DETERMINERS = ("the",) * 6 + SG_DETERMINERS
PL_TEXT_DETERMINERS = ("the",) * 5 + PL_DETERMINERS + ("some",)

NP_PREPOSITIONS = ("near", "behind", "beside", "with", "under", "by")  # "the dog near the cats"
PLACE_PREPOSITIONS = ("in", "near", "at", "behind", "around")  # "sleeps in the park"
ADVERBS = ("often", "always", "sometimes")  # pre-verbal adverbs that license no NPI
NEGATIVE_ADVERB = "never"  # licenses negative polarity items like "not" does
NPI_DETERMINER = "any"
NPI_PRONOUNS = {"animate": "anyone", "thing": "anything"}

PRONOUNS = {  # class -> (subject, object, possessive, reflexive)
    "m": ("he", "him", "his", "himself"),
    "f": ("she", "her", "her", "herself"),
    "n": ("it", "it", "its", "itself"),
    "pl": ("they", "them", "their", "themselves"),
}
PRONOUN_CLASSES = tuple(PRONOUNS)  # m, f, n, pl

VOWELS = "aeiou"  # "a" -> "an" before these (the lexicon has no "u" words read as "you")


def all_word_forms() -> tuple[str, ...]:
    """Every word form the lexicon defines, lower-cased, in a stable order (for coverage checks)."""
    words: list[str] = []
    for n in NOUNS:
        words += [n.sg, n.pl]
    for v in INTRANSITIVE + TRANSITIVE + CLAUSAL + (COPULA, DO):
        words += [v.base, v.s, v.past]
    words += [PAST_PLURAL_COPULA, NEGATIVE_ADVERB, NPI_DETERMINER, *NPI_PRONOUNS.values()]
    words += [*PLACES, *MALE_NAMES, *FEMALE_NAMES, *ADJECTIVES["animal"], *ADJECTIVES["thing"]]
    words += [*SG_DETERMINERS, *PL_DETERMINERS, "some", *NP_PREPOSITIONS, *PLACE_PREPOSITIONS, *ADVERBS]
    for cls in PRONOUN_CLASSES:
        words += PRONOUNS[cls]
    return tuple(dict.fromkeys(w.lower() for w in words))
