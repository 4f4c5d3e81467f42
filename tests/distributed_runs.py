"""Several `stlm train` runs in one torchrun launch (one process start for a whole test): each
argument is a JSON list of overrides, run in order on every rank in one process group (started
here, so every run joins it rather than starting its own); `resume=RUN` resumes as the CLI does."""

import faulthandler
import json
import os
import sys

import torch.distributed as dist

from stlm.config import compose_config
from stlm.train import run_training
from stlm.train.resume import resume_config

if __name__ == "__main__":
    # a hang (ranks in different collectives) prints every rank's stack instead of a silent timeout
    faulthandler.dump_traceback_later(float(os.environ.get("STLM_RUNS_TIMEOUT", "240")), exit=True)
    dist.init_process_group("gloo")
    for arg in sys.argv[1:]:
        overrides = json.loads(arg)
        cfg = compose_config(overrides)
        if cfg.resume:
            cfg = resume_config(cfg.resume, overrides)
        run_training(cfg, echo=lambda s: None)
    dist.destroy_process_group()
