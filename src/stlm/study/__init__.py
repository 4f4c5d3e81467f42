"""Predefined multi-model studies (`stlm study NAME`): each trains a fixed set of models on the
same data, tokens and seed, evaluates them alike, and writes a table, JSON and a plot."""

STUDIES = {"sllama": "Tied vs untied Llama, SLlama and its component ablations",
           "compress": "One trained model through every compression method at several strengths",
           "schedule": "Learning-rate and dropout schedules on the built-in corpus",
           "optimizer": "AdamW vs Muon at equal tokens, three learning rates each",
           "distill": "A student with and without a teacher trained longer",
           "byte": "BPE tied/untied vs byte tokens vs STLM's byte-pooled model at equal bytes",
           "conditional": "Dense vs LayerSkip early/confidence exit vs pause tokens vs mixture-of-depths"}
