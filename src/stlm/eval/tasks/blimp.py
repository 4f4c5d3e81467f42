"""BLiMP (Warstadt et al., 2020, TACL, arXiv 1912.00582): 67 paradigms x 1,000 minimal pairs; a
pair is right when the grammatical sentence is the more probable one. Also the BabyLM 2025
evaluation sets built from it: `blimp_filtered` (vocabulary-filtered BLiMP) and
`blimp_supplement` (hypernym, QA congruence, subject-aux inversion, turn taking).

As lm-eval's `blimp_*` tasks: empty context, so each sentence is scored after the end-of-text
token, and with the default target delimiter each continuation is " " + sentence. The overall
score is the mean of the paradigm accuracies (lm-eval's `blimp` group: weight_by_size false).
Seven pairs of the release repeat one sentence as both good and bad (passive_1: 2,
principle_A_case_2: 5); they tie under any model and count as wrong here, right in lm-eval.
"""

from __future__ import annotations

from pathlib import Path

from stlm.datadir import ways_to_provide
from stlm.errors import UserError
from stlm.eval.sources import Record, hub_records, local_file, read_jsonl
from stlm.eval.tasks.base import Item, MultipleChoiceTask, choice_item

# lm_eval/tasks/blimp/_blimp.yaml; the nyu-mll/blimp hub configs and the release's file names
BLIMP_PARADIGMS = (
    "adjunct_island", "anaphor_gender_agreement", "anaphor_number_agreement", "animate_subject_passive",
    "animate_subject_trans", "causative", "complex_NP_island",
    "coordinate_structure_constraint_complex_left_branch", "coordinate_structure_constraint_object_extraction",
    "determiner_noun_agreement_1", "determiner_noun_agreement_2", "determiner_noun_agreement_irregular_1",
    "determiner_noun_agreement_irregular_2", "determiner_noun_agreement_with_adj_2",
    "determiner_noun_agreement_with_adj_irregular_1", "determiner_noun_agreement_with_adj_irregular_2",
    "determiner_noun_agreement_with_adjective_1", "distractor_agreement_relational_noun",
    "distractor_agreement_relative_clause", "drop_argument", "ellipsis_n_bar_1", "ellipsis_n_bar_2",
    "existential_there_object_raising", "existential_there_quantifiers_1", "existential_there_quantifiers_2",
    "existential_there_subject_raising", "expletive_it_object_raising", "inchoative", "intransitive",
    "irregular_past_participle_adjectives", "irregular_past_participle_verbs",
    "irregular_plural_subject_verb_agreement_1", "irregular_plural_subject_verb_agreement_2",
    "left_branch_island_echo_question", "left_branch_island_simple_question",
    "matrix_question_npi_licensor_present", "npi_present_1", "npi_present_2", "only_npi_licensor_present",
    "only_npi_scope", "passive_1", "passive_2", "principle_A_c_command", "principle_A_case_1",
    "principle_A_case_2", "principle_A_domain_1", "principle_A_domain_2", "principle_A_domain_3",
    "principle_A_reconstruction", "regular_plural_subject_verb_agreement_1",
    "regular_plural_subject_verb_agreement_2", "sentential_negation_npi_licensor_present",
    "sentential_negation_npi_scope", "sentential_subject_island", "superlative_quantifiers_1",
    "superlative_quantifiers_2", "tough_vs_raising_1", "tough_vs_raising_2", "transitive", "wh_island",
    "wh_questions_object_gap", "wh_questions_subject_gap", "wh_questions_subject_gap_long_distance",
    "wh_vs_that_no_gap", "wh_vs_that_no_gap_long_distance", "wh_vs_that_with_gap",
    "wh_vs_that_with_gap_long_distance",
)
SUPPLEMENT_PARADIGMS = ("hypernym", "qa_congruence_easy", "qa_congruence_tricky", "subject_aux_inversion",
                        "turn_taking")
# The release's labels, normalised to the paper's groups: one paradigm's field is spelled
# "syntax/semantics" (13 others "syntax_semantics"), and two paradigms are labelled "s-selection",
# which the paper and its results summary count under argument_structure.
FIELD_SPELLING = {"syntax/semantics": "syntax_semantics"}
PHENOMENON_SPELLING = {"s-selection": "argument_structure"}
BABYLM_SOURCE = "the BabyLM 2025 evaluation pipeline's data (github.com/babylm/evaluation-pipeline-2025)"


class MinimalPairTask(MultipleChoiceTask):
    """One jsonl file (or hub config) per paradigm, each line a good/bad sentence pair."""

    split = "all"
    metrics = ("acc",)
    subtask = "paradigm"
    weight_by_size = False

    def __init__(self, name: str, summary: str, folder: str, paradigms: tuple[str, ...],
                 hub: str | None, group_keys: tuple[str, ...]):
        self.name, self.summary, self.folder, self.paradigms = name, summary, folder, paradigms
        self.hub, self.group_keys = hub, group_keys

    def records(self, root: Path | None) -> list[Record]:
        if root is not None:
            return [r for p in self.paradigms
                    for r in read_jsonl(local_file(root, f"{self.folder}/{p}.jsonl", self.name), p)]
        if self.hub is None:
            raise UserError(f"{self.name} has no hub copy; download {BABYLM_SOURCE} into a data folder "
                            f"as {self.folder}/<paradigm>.jsonl, then {ways_to_provide()}")
        return [r for p in self.paradigms for r in hub_records(self.hub, p, "train", p)]

    def item(self, record: Record) -> Item:
        labels = [("paradigm", record.subtask or "")]
        if "field" in self.group_keys:
            field, term = record.text("field"), record.text("linguistics_term")
            labels += [("field", FIELD_SPELLING.get(field, field)),
                       ("phenomenon", PHENOMENON_SPELLING.get(term, term))]
        return choice_item("", [record.text("sentence_good"), record.text("sentence_bad")], 0, tuple(labels))


BLIMP = MinimalPairTask("blimp", "BLiMP, 67 paradigms x 1,000 pairs (acc per paradigm, field, phenomenon)",
                        "blimp", BLIMP_PARADIGMS, "nyu-mll/blimp", ("paradigm", "field", "phenomenon"))
BLIMP_FILTERED = MinimalPairTask("blimp_filtered", "BabyLM 2025 vocabulary-filtered BLiMP (59,875 pairs)",
                                 "babylm-eval/blimp_filtered", BLIMP_PARADIGMS, None,
                                 ("paradigm", "field", "phenomenon"))
BLIMP_SUPPLEMENT = MinimalPairTask("blimp_supplement", "BabyLM BLiMP supplement, 5 paradigms (5,218 pairs)",
                                   "babylm-eval/supplement_filtered", SUPPLEMENT_PARADIGMS, None, ("paradigm",))
