"""The built-in corpus: stories from a small probabilistic English grammar, and minimal pairs
(BLiMP-style, Warstadt et al., 2020, TACL) drawn from the same grammar to test what a model learnt.

    from stlm.data.grammar import generate_stories, minimal_pair_suite, PARADIGMS, Pair
"""

from stlm.data.grammar.generator import generate_stories
from stlm.data.grammar.paradigms import PARADIGMS, Pair, minimal_pair_suite

__all__ = ["PARADIGMS", "Pair", "generate_stories", "minimal_pair_suite"]
