"""Predefined multi-model studies (`stlm study NAME`): each trains a fixed set of models on the
same data, tokens and seed, evaluates them alike, and writes a table, JSON and a plot."""

STUDIES = {"sllama": "Tied vs untied Llama, SLlama and its component ablations",
           "schedule": "Learning-rate and dropout schedules on the built-in corpus (issue 13)",
           "optimizer": "AdamW vs Muon at equal tokens, three learning rates each (issue 13)",
           "distill": "A student with and without a teacher trained longer (issue 13)"}
