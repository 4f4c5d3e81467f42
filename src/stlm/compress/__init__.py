"""Compression after training (`stlm compress`): pruning, layer dropping, quantisation and
low-rank factorisation of a trained run into a new, ordinary run directory.

One file per method family (`pruning`, `structured`, `depth`, `quantize`, `lowrank`), each
registering its methods in `stlm.compress.registry`; `structure` rebuilds a compressed model from
its config; `pipeline` loads, measures, compresses, fine-tunes and writes the new run.
"""
