"""The modeling code of a remote-code export: stlm's own model code, copied as flat modules.

transformers loads a folder's custom code (`trust_remote_code=True`) as one flat package: it
copies the file `auto_map` names and every file that file imports with a line of the form
`from .name import ...` (found by a regex, recursively), then checks that every absolute import
of those files is installed. So the export carries the modules that `stlm.hf.modeling_stlm` (the
`PreTrainedModel` wrapper) imports, transitively, each renamed after its dotted path
(`stlm.models.components.attention` -> `stlm_models_components_attention.py`, the wrapper ->
`modeling_stlm.py`) with its `stlm` imports rewritten as relative imports of those files. The
model a folder runs is therefore the model stlm trains, component for component: a new component
exports with no extra work, and nothing has a second implementation to drift.

Imports of names (`from stlm.x import A`) become `from .stlm_x import A`. An import that only runs
a module for its registrations (`import stlm.models.components`, `from package import module`)
becomes `from .stlm_module import __name__ as _stlm_module`, which loads it and binds nothing
the code uses; a module object used by name is refused (`RemoteCodeError`), since transformers
would not copy the file behind `from . import module`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import torch

import stlm

ENTRY_MODULE = "stlm.hf.modeling_stlm"
ENTRY_FILE = "modeling_stlm.py"
PACKAGE_DIR = Path(stlm.__file__).resolve().parent


class RemoteCodeError(RuntimeError):
    """stlm's model code uses an import form the flat remote-code copy cannot express."""


def module_file(module: str) -> Path | None:
    """The source file of stlm module `module` (a package's __init__.py), or None."""
    parts = module.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def flat_name(module: str) -> str:
    """The file name (without .py) of `module` in an export folder."""
    return ENTRY_FILE[:-3] if module == ENTRY_MODULE else module.replace(".", "_")


def _is_package(module: str) -> bool:
    path = module_file(module)
    return path is not None and path.name == "__init__.py"


def _absolute(node: ast.ImportFrom, module: str) -> str:
    if not node.level:
        return node.module or ""
    package = module if _is_package(module) else module.rpartition(".")[0]
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _stlm_imports(tree: ast.AST, module: str):
    """(statement, [(target module, bound name or None for attribute imports, alias)]) for each
    import of an stlm module in `tree`, function-level ones included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(a.name, a.asname or a.name.split(".")[0], a) for a in node.names
                       if a.name == "stlm" or a.name.startswith("stlm.")]
            if targets:
                if len(targets) != len(node.names):
                    raise RemoteCodeError(f"{module} line {node.lineno}: split this import into one "
                                          "statement for stlm modules and one for others")
                yield node, targets
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module)
            if base != "stlm" and not base.startswith("stlm."):
                continue
            targets = []
            for a in node.names:
                sub = f"{base}.{a.name}"
                if module_file(sub) is not None:  # `from package import module`
                    targets.append((sub, a.asname or a.name, a))
                else:
                    targets.append((base, None, a))
            yield node, targets


def source_closure(entry: str = ENTRY_MODULE) -> list[str]:
    """Every stlm module `entry` imports, transitively (function-level imports too), entry first."""
    seen, queue = [entry], [entry]
    while queue:
        module = queue.pop(0)
        path = module_file(module)
        if path is None:
            raise RemoteCodeError(f"{module} has no source file under {PACKAGE_DIR}")
        for _, targets in _stlm_imports(ast.parse(path.read_text(encoding="utf-8")), module):
            for target, _, _ in targets:
                if module_file(target) is None:
                    raise RemoteCodeError(f"{module} imports {target}, which has no source file")
                if target not in seen:
                    seen.append(target)
                    queue.append(target)
    return seen


def _names_used(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def rewrite(module: str, source: str) -> str:
    """`source` of `module` with every stlm import made relative to the flat folder."""
    tree = ast.parse(source)
    used = _names_used(tree)
    lines = source.splitlines(keepends=True)
    edits = []
    for node, targets in _stlm_imports(tree, module):
        indent = lines[node.lineno - 1][: node.col_offset]
        if indent.strip():
            raise RemoteCodeError(f"{module} line {node.lineno}: put the import on a line of its own")
        statements = []
        attributes = [a for target, bound, a in targets if bound is None]
        if attributes:
            names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in attributes)
            statements.append(f"from .{flat_name(targets[0][0])} import {names}")
        for target, bound, _ in targets:
            if bound is None:
                continue
            if bound in used:
                raise RemoteCodeError(f"{module} line {node.lineno} uses the module object '{bound}'; "
                                      f"import the names it needs from {target} instead")
            statements.append(f"from .{flat_name(target)} import __name__ as _{flat_name(target)}  "
                              f"# noqa: F401 (runs it)")
        edits.append((node.lineno, node.end_lineno, "".join(f"{indent}{s}\n" for s in statements)))
    for start, end, text in sorted(edits, reverse=True):
        lines[start - 1 : end] = [text]
    return "".join(lines)


def write_sources(folder: Path) -> list[str]:
    """Write the flat modeling code into `folder`; returns the file names written."""
    written = []
    for module in source_closure():
        path = module_file(module)
        text = rewrite(module, path.read_text(encoding="utf-8"))
        name = flat_name(module) + ".py"
        (Path(folder) / name).write_text(text, encoding="utf-8")
        written.append(name)
    return written


AUTO_MAP = {"AutoConfig": f"{ENTRY_FILE[:-3]}.StlmConfig",
            "AutoModelForCausalLM": f"{ENTRY_FILE[:-3]}.StlmForCausalLM"}


@torch.no_grad()
def to_hf_remote(model) -> "torch.nn.Module":
    """A `StlmForCausalLM` (float32, eval mode) carrying copies of `model`'s weights and of the
    tables its components filled from the tokenizer; config.json will name the folder's code."""
    from stlm.hf.modeling_stlm import StlmForCausalLM, stlm_config

    config = stlm_config(model.cfg, model.vocab_size)
    config.auto_map = dict(AUTO_MAP)
    hf = StlmForCausalLM(config)
    ours = dict(model.named_parameters(remove_duplicate=False)) | dict(model.named_buffers(remove_duplicate=False))
    for name, tensor in hf.model.state_dict().items():
        if name not in ours or ours[name].shape != tensor.shape:
            raise RemoteCodeError(f"the exported model's '{name}' has no counterpart of the same shape in "
                                  "the run's model")
        tensor.copy_(ours[name])
    return hf.eval()
