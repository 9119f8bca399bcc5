"""Where a whole `bsgd denoise` command spends its time: cProfile over the command, summed by stage.

    .venv/bin/python scripts/profile_command.py runs/speed/one -o runs/speed/out
    .venv/bin/python scripts/profile_command.py runs/speed/four -o runs/speed/out --mode bsn

Arguments after the script name are those of `bsgd denoise`. The command runs in this process under
cProfile (imports included: the script imports nothing of bsgd before it starts); each stage is the
cumulative time of the functions named below, on whichever thread ran them (decode and encode run on
the worker threads: cProfile sees only the main thread, so those two are timed by wrapping them).
Prints a Markdown table: stage, seconds, share of the command's wall time.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

# stage -> (module file suffix, function name) whose cumulative time on the main thread is the stage's
STAGES: dict[str, list[tuple[str, str]]] = {
    "model load": [("engine/model.py", "load_model"), ("checkpoint.py", "load_model")],
    "network pass": [("engine/denoise.py", "network_pass")],
    "Wiener step": [("engine/denoise.py", "wiener_pass")],
}
THREADED = {"decode": ("bsgd_cli.batch.denoise", "_read"), "encode and metadata": ("bsgd_cli.batch.denoise", "_finish")}


def _timed(totals: dict[str, float], stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
    lock = threading.Lock()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            with lock:
                totals[stage] += time.perf_counter() - started

    return wrapper


def main() -> None:
    argv = ["bsgd", "denoise", *sys.argv[1:], "-q"]
    threaded: dict[str, float] = defaultdict(float)
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    import importlib

    from bsgd_cli.engine.threads import prepare_openmp

    prepare_openmp()  # as bsgd's main() does, before torch loads (the wrapping below imports it)
    from bsgd_cli.cli import app  # imports counted in the profile and the wall time
    from bsgd_cli.engine.allocator import tune_allocator

    tune_allocator()  # as main() does; main() itself would end the process without returning here

    for stage, (module_name, name) in THREADED.items():
        module = importlib.import_module(module_name)
        setattr(module, name, _timed(threaded, stage, getattr(module, name)))
    imported = time.perf_counter() - started
    sys.argv = argv
    try:
        app()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise
    profile.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profile)
    rows: dict[str, float] = {"imports (command line, torch, numpy)": imported}
    for stage, functions in STAGES.items():
        seconds = 0.0
        for (filename, _, function), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
            if any(filename.endswith(suffix) and function == name for suffix, name in functions):
                seconds += cumulative
        rows[stage] = seconds
    rows.update(threaded)
    print(f"`bsgd denoise {' '.join(sys.argv[2:])}`: {wall:.2f} s wall\n")
    print("| stage | seconds | share of wall |")
    print("|---|---|---|")
    for stage, seconds in rows.items():
        print(f"| {stage} | {seconds:.2f} | {100 * seconds / wall:.0f} % |")
    print("\n(decode and encode run on worker threads, overlapping the network; the other stages on the main "
          "thread)")
    print("\nTop 12 by cumulative time, main thread:\n```")
    stats.sort_stats("cumulative").print_stats(12)
    print("```")


if __name__ == "__main__":
    main()
