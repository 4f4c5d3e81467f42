"""What a run reports while it trains: metrics.jsonl, the loss plot and a progress bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stlm.fileio import write_atomic


class MetricsLog:
    """Appends one JSON object per logged step to metrics.jsonl (flushed, so a killed run keeps
    every line it logged). On resume, lines past the checkpoint's step are dropped first. Each
    record also goes to `tracker` (`stlm.train.tracking`), when one is given."""

    def __init__(self, path: Path, resume_step: int | None = None, tracker=None):
        self.path, self.tracker = path, tracker
        if resume_step is not None and path.exists():
            kept = [r for r in read_metrics(path) if r.get("step", 0) <= resume_step]
            write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self.tracker is not None:
            self.tracker.log(record, record.get("step", 0))

    def close(self) -> None:
        self._file.close()
        if self.tracker is not None:
            self.tracker.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; a torn last line (a killed run) is skipped."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_losses(metrics_path: Path, out: Path, title: str = "") -> None:
    """Training and validation loss against tokens seen, written as a PNG (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [(r["tokens"], r["loss"]) for r in records if "loss" in r]
    val = [(r["tokens"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", linewidth=1.5)
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


class ProgressBar:
    """A rich progress bar with loss, tokens per second and ETA; a no-op when disabled."""

    def __init__(self, enabled: bool, total: float, completed: float = 0.0, description: str = "train"):
        self._progress = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}"),
                                  TimeRemainingColumn(), transient=False)
        self._task = self._progress.add_task(description, total=total, completed=completed,
                                             loss="-", speed="")
        self._progress.start()

    def update(self, completed: float, loss: float | None = None, tok_per_s: float | None = None) -> None:
        if self._progress is None:
            return
        fields = {}
        if loss is not None:
            fields["loss"] = f"{loss:.3f}"
        if tok_per_s is not None:
            fields["speed"] = f"{tok_per_s / 1000:.1f}k tok/s"
        self._progress.update(self._task, completed=completed, **fields)

    def print(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, soft_wrap=True)  # a line stays one line
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
