"""stlm runs as an lm-evaluation-harness model (Gao et al., EleutherAI, `lm_eval`), so any harness
task runs on them:

    python -m stlm.eval.harness run --model stlm --model_args run=runs/NAME --batch_size 64 --tasks arc_easy

(`python -m stlm.eval.harness` is the `lm_eval` command with the `stlm` model registered; the
plain `lm_eval` command only knows it when this module was imported, e.g. from Python.)
Model args: run (the run directory), checkpoint (best | last | step-N), prefix_token_id (the token
an empty context is scored after; default the tokenizer's BOS, else end-of-text, as lm-eval's
`hf` model); batch size and device come
from lm-eval's --batch_size (its default is 1: pass e.g. 64) and --device (CPU when CUDA is absent).
`max_length` is the run's trained context (`LoadedRun.context`), not the model's maximum.

Loglikelihoods go through `stlm.eval.scoring.score_continuations` (the harness's context /
continuation split comes from `TemplateLM`, this adapter only scores tokens; a continuation longer
than the window is scored whole in several windows, where lm-eval's `hf` backend refuses it);
`loglikelihood_rolling` uses the harness's disjoint rolling windows with end-of-text as prefix;
`generate_until` decodes greedily (sampling when `do_sample`) after the end-of-text token, with
the KV cache, and cuts at the first stop string. lm-eval is an optional extra (`stlm[eval]`):
nothing else in stlm imports this module.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

try:
    from lm_eval import utils as lm_utils
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
except ImportError as e:  # pragma: no cover - exercised only without the extra installed
    from stlm.errors import UserError

    raise UserError("the lm-evaluation-harness adapter needs lm-eval: pip install 'stlm[eval]'") from e

import torch

from stlm.eval.scoring import score_continuations
from stlm.eval.sources import Record
from stlm.generate import generate_ids

DEFAULT_MAX_GEN_TOKS = 256


class _StopGeneration(Exception):
    pass


@register_model("stlm")
class StlmLM(TemplateLM):
    """A trained stlm model (or any `LanguageModel` + `Tokenizer` pair) behind lm-eval's LM API."""

    def __init__(self, run: str | None = None, checkpoint: str = "best", batch_size: int | str = 64,
                 device: str | None = None, model: torch.nn.Module | None = None, tokenizer=None,
                 max_gen_toks: int = DEFAULT_MAX_GEN_TOKS, max_batch_size: int | None = None,
                 prefix_token_id: int | None = None, context_length: int | None = None):
        super().__init__()
        if model is None:
            if run is None:
                raise ValueError("the stlm model needs model_args run=<run directory>")
            from stlm.runs import load_run

            from stlm.device import resolve_device

            # lm-eval's default is cuda:0: without CUDA that means the CPU, not an error
            loaded = load_run(run, checkpoint, resolve_device(device, fallback=True))
            model, tokenizer = loaded.model, loaded.tokenizer
            context_length = context_length or loaded.context  # the trained window, not the model's
        elif tokenizer is None:
            raise ValueError("pass the tokenizer together with the model")
        self.model, self.tok = model.eval(), tokenizer
        self._device = next(model.parameters()).device
        # lm-eval's "auto" batch sizing has no meaning here (and max_batch_size only serves it)
        self.batch_size = 64 if str(batch_size).startswith("auto") else int(batch_size)
        self.max_gen_toks = int(max_gen_toks)
        self._prefix_token_id, _ = self.tok.prefix_id(None if prefix_token_id is None else int(prefix_token_id))
        self._context = min(int(context_length or model.cfg.context_length), model.cfg.context_length)

    @property
    def eot_token_id(self) -> int:
        return self.tok.eot_id

    @property
    def prefix_token_id(self) -> int:
        return self._prefix_token_id

    @property
    def max_length(self) -> int:
        return self._context

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tok.encode(string)

    def tok_decode(self, tokens, **kwargs) -> str:
        return self.tok.decode(tokens)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        scores = score_continuations(self.model, [(ctx, cont) for _, ctx, cont in requests],
                                     self.batch_size, self._device, self.max_length)
        out = [(s.logprob, s.is_greedy) for s in scores]
        for (key, _, _), result in zip(requests, out):
            if key is not None:  # rolling windows have no (context, continuation) strings
                self.cache_hook.add_partial("loglikelihood", key, result)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owner = [], []
        for i, (text,) in enumerate(req.args for req in requests):
            for ctx, cont in map(lm_utils.make_disjoint_window, lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(text), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, ctx, cont))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (logprob, _) in zip(owner, self._loglikelihood_tokens(windows)):
            totals[i] += logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for req in requests:
            context, kwargs = req.args
            kwargs = dict(kwargs)
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            temperature = float(kwargs.get("temperature", 1.0)) if kwargs.get("do_sample") else 0.0
            text = self._generate(context, until, max_new, temperature)
            self.cache_hook.add_partial("generate_until", req.args, text)
            out.append(text)
        return out

    def _generate(self, context: str, until: list[str], max_new: int, temperature: float) -> str:
        """Up to `max_new` tokens after end-of-text + context, stopping once a stop string appears."""
        ids: list[int] = []

        def check(token: int) -> None:
            ids.append(token)
            if until and any(s in self.tok.decode(ids) for s in until):
                raise _StopGeneration

        prompt = [self.tok.eot_id] + self.tok.encode(context)
        try:
            generate_ids(self.model, prompt[-max(1, self.max_length - max_new):], max_new,
                         temperature=temperature, stop_id=self.tok.eot_id, on_token=check)
        except _StopGeneration:
            pass
        text = self.tok.decode(ids)
        for s in until:
            text = text.split(s)[0]
        return text


# Our tasks and the lm-eval tasks they reproduce: (YAML under lm_eval/tasks, "{}" = the subtask;
# the split our examples come from). blimp_filtered / blimp_supplement are BabyLM's, not lm-eval's.
HARNESS_TASKS = {
    "blimp": ("blimp/{}.yaml", "train"),
    "hellaswag": ("hellaswag/hellaswag.yaml", "validation"),
    "arc_easy": ("arc/arc_easy.yaml", "test"),
    "arc_challenge": ("arc/arc_challenge.yaml", "test"),
    "winogrande": ("winogrande/default.yaml", "validation"),
    "mmlu": ("mmlu/continuation/mmlu_{}.yaml", "test"),
    "mmlu_letter": ("mmlu/default/mmlu_{}.yaml", "test"),
}


def local_harness_task(yaml_path: str, data_file: str | Path, split: str, cache_dir: Path | None = None):
    """lm-eval's own task from its YAML (`yaml_path` relative to `lm_eval/tasks`), reading the
    examples of `split` from a local .jsonl file instead of the hub (`datasets` keeps its Arrow copy
    in `cache_dir`, default its own cache). Builds the task directly, without indexing the
    harness's thousands of task files."""
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(Path(lm_eval.__file__).parent / "tasks" / yaml_path, resolve_func=True)
    files = {"data_files": {split: str(data_file)}, **({"cache_dir": str(cache_dir)} if cache_dir else {})}
    cfg.update(dataset_path="json", dataset_name=None, dataset_kwargs=files,
               training_split=None, validation_split=None, test_split=None, fewshot_split=None)
    cfg["validation_split" if split == "validation" else "test_split"] = split
    return ConfigurableTask(config=cfg)


def harness_tasks(task: str, records: list[Record], folder: Path) -> tuple[dict, list[tuple[str, int]]]:
    """lm-eval's tasks over exactly `records` of our `task` (written to jsonl files in `folder`,
    in the hub's schema), and for each record, in order, its (lm-eval task name, doc_id)."""
    if task not in HARNESS_TASKS:
        raise ValueError(f"{task} has no lm-evaluation-harness counterpart")
    yaml_path, split = HARNESS_TASKS[task]
    by_sub: dict[str | None, list[Record]] = {}
    for r in records:
        by_sub.setdefault(r.subtask, []).append(r)
    tasks, where = {}, {}
    for sub, recs in by_sub.items():
        path = folder / f"{task}-{sub or 'all'}.jsonl"
        path.write_text("".join(json.dumps(_hub_schema(task, r.data)) + "\n" for r in recs))
        built = local_harness_task(yaml_path.format(sub), path, split, folder / ".datasets-cache")
        tasks[built.config.task] = built
        where.update({id(r): (built.config.task, i) for i, r in enumerate(recs)})
    return tasks, [where[id(r)] for r in records]


def _hub_schema(task: str, data: dict) -> dict:
    """Our local layouts -> the hub schema lm-eval's YAMLs read (MMLU csv rows; ARC with `gold`)."""
    if task.startswith("mmlu") and "choices" not in data:
        return {"question": data["question"], "choices": [data[f"choice{i}"] for i in range(4)],
                "answer": int(data["answer"])}
    if task.startswith("arc") and isinstance(data.get("choices"), list):
        labels = [chr(ord("A") + i) for i in range(len(data["choices"]))]
        return {"question": data["question"], "choices": {"text": data["choices"], "label": labels},
                "answerKey": labels[int(data["gold"])]}
    return data


HARNESS_OFFLINE_FIX = ("lm-eval reads its tasks from the hub; offline, evaluate with `stlm eval RUN --tasks "
                       "blimp,hellaswag,... --data-dir DIR` (local files laid out as docs/data.md says, or "
                       "$STLM_DATA_DIR), or set HF_DATASETS_OFFLINE=1 when the task data is in your Hugging "
                       "Face cache")


def main(argv: list[str] | None = None) -> int:
    """`lm_eval`'s command line with the `stlm` model registered. When it is asked to run tasks and
    the hub cannot be reached (and `datasets` is not told to stay offline), it fails within
    seconds with one line saying how to evaluate from local files, instead of retrying for a
    minute and ending in a traceback."""
    from lm_eval.__main__ import cli_evaluate

    from stlm.data.sources import check_hub_reachable, hub_offline
    from stlm.errors import UserError
    from stlm.eval.sources import HUB_TIMEOUT_S

    args = sys.argv[1:] if argv is None else list(argv)
    sys.argv = [sys.argv[0], *args]
    wants_tasks = any(a == "--tasks" or a.startswith("--tasks=") for a in args)
    try:
        if wants_tasks and not hub_offline():
            check_hub_reachable(HUB_TIMEOUT_S, "the lm-eval task data", HARNESS_OFFLINE_FIX)
    except UserError as exc:
        print(f"stlm.eval.harness: error: {exc}", file=sys.stderr)
        return 2
    cli_evaluate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
