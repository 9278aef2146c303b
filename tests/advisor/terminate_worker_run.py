"""Start the advisor's process worker, give it work, then stop it with no grace period, so that
``close`` must terminate it (used by test_process_worker.py).

    python -m tests.advisor.terminate_worker_run <converted_model_cache_dir>
"""

import copy
import logging
import sys

import numpy as np
from omegaconf import OmegaConf

from hybrid_trader.advisor.advisor import Advisor
from hybrid_trader.advisor.worker import ProcessAdvisor
from tests.advisor.conftest import FLAT_MASK, mirrored, up_state
from tests.conftest import PROJECT_ROOT


def main(cache_dir: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    params = OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "conf/base/parameters_advisor.yml"))["advisor"]
    params = copy.deepcopy(params)
    params["model"]["cache_dir"] = cache_dir
    worker = ProcessAdvisor(Advisor.from_params(params), params, batch_size=8)
    states = [up_state(), mirrored(up_state())] * 4
    assert worker.submit(states, np.stack([FLAT_MASK] * len(states)), list(range(len(states))), step=0)
    worker.close(timeout=0.0)  # the child is busy with the batch: close must terminate it
    print("worker alive after close:", worker.alive, "forced stop:", worker.forced_stop, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
