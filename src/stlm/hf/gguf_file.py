"""A GGUF file (llama.cpp's single-file format: metadata, tokenizer and weights, maybe quantised)
as a source for `stlm import`.

transformers reads GGUF itself (`from_pretrained(folder, gguf_file=NAME)`): it rebuilds the config
and the tokenizer from the metadata, dequantises every tensor to float and undoes llama.cpp's
reordering of the query and key rows for its RoPE. This module only finds the file and checks,
with the `gguf` package's own reader, that it is an intact Llama GGUF before transformers loads it,
so that a wrong file fails with one clear line instead of deep in transformers.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from stlm.errors import UserError

SUFFIX = ".gguf"
INSTALL = "pip install gguf (or pip install 'stlm[eval]')"


@dataclass(frozen=True)
class GGUFSource:
    """`folder/name`: what `from_pretrained(folder, gguf_file=name)` loads."""

    folder: Path
    name: str
    architecture: str
    tensor_types: dict[str, int]  # ggml type -> number of tensors stored in it, e.g. {"Q8_0": 14, "F32": 5}
    rope_scaling: str | None  # how the file scales RoPE, if it does: a scaling type, or rope_freqs (Llama 3.1)

    @property
    def path(self) -> Path:
        return self.folder / self.name


def llama_gguf(source: str | Path, gguf_file: str | None = None) -> GGUFSource | None:
    """The Llama GGUF file `source` names (see `find_gguf`), checked; None for a transformers folder."""
    found = find_gguf(source, gguf_file)
    if found is None:
        return None
    gguf = read_gguf(*found)
    if gguf.architecture != "llama":
        raise UserError(f"{gguf.path} holds a '{gguf.architecture}' model; stlm imports Llama GGUF files "
                        f"(general.architecture = llama) only")
    if gguf.rope_scaling is not None:  # transformers' GGUF loader would drop it for Llama
        raise UserError(f"{gguf.path} scales RoPE ({gguf.rope_scaling}), which stlm's Llama does not "
                        f"implement; import a Llama without RoPE scaling")
    return gguf


def find_gguf(source: str | Path, gguf_file: str | None = None) -> tuple[Path, str] | None:
    """(folder, file name) of the GGUF that `source` names: the file itself, `gguf_file` inside the
    folder `source`, or the one .gguf file of a folder without config.json. None for a transformers
    folder (config.json and no `gguf_file`)."""
    source = Path(source)
    if not source.exists():
        raise UserError(f"{source} does not exist; give a transformers model folder, a .gguf file or a "
                        f"folder holding one")
    if source.is_file():
        if gguf_file is not None:
            raise UserError(f"--gguf-file names a file inside a folder, but {source} is a file; give its folder")
        if source.suffix.lower() != SUFFIX:
            raise UserError(f"{source} is not a .gguf file; give a .gguf file or a transformers model folder")
        return source.parent, source.name
    if gguf_file is not None:
        if not (source / gguf_file).is_file():
            raise UserError(f"{source / gguf_file} does not exist (--gguf-file {gguf_file})")
        return source, gguf_file
    if (source / "config.json").is_file():
        return None
    found = sorted(p.name for p in source.iterdir() if p.suffix.lower() == SUFFIX and p.is_file())
    if not found:
        raise UserError(f"{source} is not a transformers model folder (no config.json) and holds no .gguf file")
    if len(found) > 1:
        raise UserError(f"{source} holds {len(found)} .gguf files ({', '.join(found[:4])}); choose one with "
                        f"--gguf-file NAME")
    return source, found[0]


def read_gguf(folder: Path, name: str) -> GGUFSource:
    """The file's architecture and tensor types, read with the `gguf` package; a file that is not an
    intact GGUF, or a missing package, is a UserError."""
    try:
        from gguf import GGUFReader
    except ImportError as e:
        raise UserError(f"reading GGUF files needs the gguf package: {INSTALL}") from e
    path = folder / name
    try:
        reader = GGUFReader(path)
        architecture = _string(reader, "general.architecture")
        scaling = _string(reader, f"{architecture}.rope.scaling.type", default="none")
        types = Counter(t.tensor_type.name for t in reader.tensors)
        names = {t.name for t in reader.tensors}
    except (ValueError, IndexError, KeyError, OSError, UnicodeDecodeError, struct.error) as e:
        raise UserError(f"{path} is not a valid GGUF file ({type(e).__name__}: {e}); it may be truncated "
                        f"or corrupt: download it again") from e
    # llama.cpp writes Llama 3.1's frequency rescaling as a `rope_freqs` tensor
    rope_scaling = "rope_freqs" if "rope_freqs.weight" in names else None if scaling == "none" else scaling
    return GGUFSource(folder, name, architecture, dict(types), rope_scaling)


def _string(reader, key: str, default: str | None = None) -> str:
    if key not in reader.fields and default is not None:
        return default
    field = reader.fields[key]
    return bytes(field.parts[field.data[0]]).decode("utf-8")
