#!/usr/bin/python3
"""The peer of coordinator_bench's trials mode: Optuna on SQLite running the
same kind of grid as ask/tell, each trial reporting 10 intermediate values
before it is told its result. Prints trials/s.

    optuna_peer.py [--trials N] [--processes P] [--dir DIR]
"""
import argparse
import multiprocessing
import os
import tempfile
import time

import optuna


def run_trials(storage, count):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(storage=storage, study_name="peer",
                              sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(count):
        trial = study.ask()
        trial.suggest_float("lr", 0.001, 0.1)
        for step in range(10):
            trial.report(10.0 - step, step)
        study.tell(trial, 1.0)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--processes", type=int, default=1,
                        help="clients asking and telling concurrently on the one SQLite study")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        storage = "sqlite:///" + os.path.join(tmp, "optuna.db")
        grid = [0.001 + i * (0.1 - 0.001) / max(1, args.trials - 1) for i in range(args.trials)]
        # The grid is enqueued up front (outside the timing), as madamd expands
        # a sweep at submit; each ask then takes the next grid point.
        study = optuna.create_study(storage=storage, study_name="peer",
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        # Several processes popping enqueued trials race in Optuna 3.1 ("Trial#2
        # has already finished and can not be updated"), so with more than one
        # they sample lr from the grid's range instead.
        if args.processes == 1:
            for lr in grid:
                study.enqueue_trial({"lr": lr})
        start = time.perf_counter()
        share = args.trials // args.processes
        with multiprocessing.Pool(args.processes) as pool:
            pool.starmap(run_trials, [(storage, share)] * args.processes)
        elapsed = time.perf_counter() - start
        done = share * args.processes
    print(f"optuna: {done} trials (ask, 10 reports, tell) by {args.processes} process(es) on SQLite "
          f"in {elapsed:.3f} s: {done / elapsed:.1f} trials/s")
    print(f"RESULT optuna_trials_per_second {done / elapsed:.1f}")


if __name__ == "__main__":
    main()
