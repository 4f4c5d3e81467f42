"""Predefined multi-model studies (`stlm study NAME`): each trains a fixed set of models on the
same data, tokens and seed, evaluates them alike, and writes a table, JSON and a plot."""

STUDIES = {"sllama": "Tied vs untied Llama, SLlama and its component ablations",
           "byte": "BPE tied/untied vs byte tokens vs STLM's byte-pooled model at equal bytes"}
