"""The one command line: ``python -m dpolib.experiments {world,run,show,estimate,exact} ...``.

Examples::

    python -m dpolib.experiments world --profile cpu               # build the CPU world; write its report and compatibility
    python -m dpolib.experiments run --grid rq1 --profile cpu --workers 2
    python -m dpolib.experiments run --grid all --profile smoke
    python -m dpolib.experiments run --grid rq3 --profile cpu --engine sweep   # each student's runs as one batched run
    python -m dpolib.experiments show --grid rq1 --profile cpu     # print the grid's table
    python -m dpolib.experiments world --profile gpu               # SFT the gpu student once (cached)
    python -m dpolib.experiments run --grid rq1 --profile gpu --judge alpaca_eval   # the real AlpacaEval 2
    python -m dpolib.experiments run --grid rq1 --profile gpu --lora --set n_pref_train=512
    python -m dpolib.experiments estimate                          # ESTIMATED minutes per gpu run per GPU kind
    python -m dpolib.experiments exact                             # the exact world's and the theory's records
    python -m dpolib.experiments reproduce --profile cpu --workers 2   # the whole cpu reproduction, one schedule

``--set field=value`` overrides a :class:`dpolib.hub.profile.HubProfile` field at ``--profile gpu``
(the record key changes with it).
"""

from __future__ import annotations

import argparse
import ast
import sys
import time

from .config import GRIDS, PROFILES, students


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers takes an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--workers takes an integer >= 1, got {value}")
    return value


def _gpu_profile(args):
    from dataclasses import fields

    from ..hub.profile import HubProfile, get_gpu_profile

    names = {f.name for f in fields(HubProfile)}
    overrides = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        if key not in names:
            raise SystemExit(f"--set {key}: not a HubProfile field; fields: {', '.join(sorted(names))}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    if args.lora:
        overrides["lora"] = True
    return get_gpu_profile(**overrides)


def _backend(args):
    if args.profile != "gpu":
        if args.set or args.lora or args.judge != "reward_model":
            raise SystemExit("--set, --lora and --judge apply to --profile gpu only")
        from .cpu import CpuBackend

        return CpuBackend(args.profile)
    from .gpu import GpuBackend

    return GpuBackend(_gpu_profile(args), judge=args.judge)


def _table(records) -> "object":
    import pandas as pd

    rows = [{
        "student": r.student, "objective": r.objective, "reference": r.reference, "beta": r.beta, "seed": r.seed,
        "LC": round(r.lc, 2), "WR": round(r.metrics.win_rate, 2), "gold": round(r.gold, 3),
        "acc r": round(r.metrics.reward_accuracy, 3), "acc p": round(r.metrics.policy_accuracy, 3),
        "len": round(r.metrics.mean_length_chars, 1), "degenerate": r.degenerate, "s": round(r.wall_time_s, 1),
    } for r in records]
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dpolib.experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {
        "world": sub.add_parser("world", help="build a profile's world (cpu: models, data, report, compatibility; "
                                              "gpu: the student)"),
        "run": sub.add_parser("run", help="run (or read back) a named grid"),
        "show": sub.add_parser("show", help="print a named grid's records"),
    }
    reproduce = sub.add_parser("reproduce", help="the whole cpu-world reproduction as one schedule: every world "
                                                 "seed's world, every grid (tools/reproduce_cpu.sh)")
    reproduce.add_argument("--profile", default="cpu", choices=[p for p in PROFILES if p != "gpu"])
    reproduce.add_argument("--workers", type=_workers, default=2, help="parallel processes (one thread each)")
    sub.add_parser("estimate", help="ESTIMATED time of one gpu DPO run per GPU kind")
    exact = sub.add_parser("exact", help="write the exact world's and the theory chapter's records (results/exact, "
                                         "results/theory); read back when their key is unchanged")
    exact.add_argument("--force", action="store_true", help="recompute even when a record with the same key exists")
    for name, p in commands.items():
        p.add_argument("--profile", default="cpu", choices=PROFILES)
        p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a HubProfile field (gpu)")
        p.add_argument("--lora", action="store_true", help="LoRA adapters (PEFT) instead of full fine-tuning (gpu)")
        p.add_argument("--judge", choices=("reward_model", "alpaca_eval"), default="reward_model",
                       help="the gpu judge (alpaca_eval: the real AlpacaEval 2, API key needed)")
        if name != "world":
            p.add_argument("--grid", required=True, choices=[*GRIDS, "all"])
            p.add_argument("--seeds", type=int, nargs="+", default=[0])
        else:
            p.add_argument("--seeds", type=int, nargs="+", default=None,
                           help="world seeds to build (default: the profile's seeds)")
            p.add_argument("--workers", type=_workers, default=1, help="parallel processes (cpu world; one thread each)")
        if name == "run":
            p.add_argument("--force", action="store_true", help="recompute even when a record exists")
            p.add_argument("--workers", type=_workers, default=1, help="parallel processes (cpu world; one thread each)")
            p.add_argument("--engine", choices=("trl", "sweep"), default="trl",
                           help="train each run through TRL, or the runs of one student as one batched sweep (cpu world)")
    args = parser.parse_args(argv)

    if args.command == "estimate":
        from ..hub.profile import ASSUMED_TFLOPS, estimate

        for gpu in ASSUMED_TFLOPS:
            e = estimate(gpu=gpu)
            print(f"{gpu}: about {e['estimated_minutes']:.0f} min per DPO run ({e['dpo_steps']} steps) -- an ESTIMATE, "
                  "not a measurement")
        return 0
    if args.command == "reproduce":
        from .reproduce import reproduce as run_all

        out = run_all(args.profile, workers=args.workers)
        print(f"reproduction of profile {args.profile!r}: {out['wall_seconds']:.1f} s wall on {args.workers} workers; "
              "seconds of work per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in out["job_seconds"].items()))
        return 0
    if args.command == "exact":
        from .exact import write_all

        write_all(force=args.force)
        return 0
    backend = _backend(args)
    if args.command == "world":
        t = time.perf_counter()
        if args.profile == "gpu":
            from ..hub.sft import build_student

            where = build_student(backend.profile, progress=True)
        else:
            from ..world.compatibility import write_compatibility
            from ..world.report import write_world_report

            from ..world.report import record_stage_seconds
            from .cpu import build_world
            from .lr_rule import write_lr_choices

            build_world(backend.profile, seeds=args.seeds or backend.profile.seeds, on_policy=True,
                        workers=args.workers)
            built = time.perf_counter() - t
            write_world_report(backend.profile)
            compatibility = write_compatibility(backend.profile)
            choices = write_lr_choices(backend, students(args.profile))
            record_stage_seconds(args.profile, "world (models, data, learning-rate rule; every world seed)", built)
            where = f"results/lab/world_report_{args.profile}.json, {compatibility} and {choices}"
        print(f"world for profile {args.profile!r} ready in {time.perf_counter() - t:.1f} s: {where}")
        return 0

    from .records import grid, load_records
    from .runner import run_grid

    for name in (list(GRIDS) if args.grid == "all" else [args.grid]):
        if args.command == "run":
            t = time.perf_counter()
            records = run_grid(name, args.profile, seeds=args.seeds, force=args.force, workers=args.workers,
                               backend=backend if args.workers == 1 else None, engine=args.engine)
            seconds = time.perf_counter() - t
            print(f"grid {name}: {len(records)} records in {seconds:.1f} s")
            if args.profile != "gpu":
                from ..world.report import record_stage_seconds

                seeds = ",".join(map(str, args.seeds))
                record_stage_seconds(args.profile, f"grid {name} (seeds {seeds}, {args.engine} engine)", seconds)
        damaged: list = []
        records = load_records(grid(name, args.profile, args.seeds), settings=backend.settings,
                               suffix=backend.record_suffix, damaged=damaged)
        print(f"\n== {name} ({args.profile}): {len(records)} records")
        for err in damaged:
            print(f"damaged record, skipped (run recomputes it): {err}")
        if records:
            print(_table(records).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
