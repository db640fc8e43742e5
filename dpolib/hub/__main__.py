"""Command line for the gpu profile: ``python -m dpolib.hub {student,run,show,estimate} ...``.

Examples (on a GPU; Colab: a T4 runs one DPO run of the default profile, see book/reproduce_paper_scale.md)::

    python -m dpolib.hub student                         # SFT the student once (cached)
    python -m dpolib.hub run --grid rq1                  # run (or read back) the RQ1 grid
    python -m dpolib.hub run --grid rq1 --lora           # the same with LoRA adapters (a different profile key)
    python -m dpolib.hub run --grid rq1 --judge alpaca_eval   # the real AlpacaEval 2 (OPENAI_API_KEY)
    python -m dpolib.hub show --grid rq1
    python -m dpolib.hub estimate                        # ESTIMATED minutes per run on T4/L4/A100/H100

``--set field=value`` overrides any :class:`dpolib.hub.profile.HubProfile` field (the record key changes with it).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time


def _profile(args):
    from dataclasses import fields

    from .profile import HubProfile, get_gpu_profile

    types = {f.name: f for f in fields(HubProfile)}
    overrides = {}
    for item in getattr(args, "set", None) or []:
        key, _, value = item.partition("=")
        if key not in types:
            raise SystemExit(f"--set {key}: not a HubProfile field; fields: {', '.join(sorted(types))}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    if getattr(args, "lora", False):
        overrides["lora"] = True
    return get_gpu_profile(**overrides)


def main(argv: list[str] | None = None) -> int:
    from .runner import GRIDS, JUDGES

    parser = argparse.ArgumentParser(prog="python -m dpolib.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("student", help="build (or find) the SFT student")
    r = sub.add_parser("run", help="run a grid")
    sh = sub.add_parser("show", help="print a grid's records")
    sub.add_parser("estimate", help="ESTIMATED time of one DPO run per GPU kind")
    for p in (s, r, sh):
        p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a HubProfile field")
        p.add_argument("--lora", action="store_true", help="LoRA adapters (PEFT) instead of full fine-tuning")
    for p in (r, sh):
        p.add_argument("--grid", required=True, choices=[*GRIDS, "all"])
        p.add_argument("--seeds", type=int, nargs="+", default=[0])
        p.add_argument("--judge", choices=JUDGES, default="reward_model")
    r.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "estimate":
        from .profile import ASSUMED_TFLOPS, estimate

        for gpu in ASSUMED_TFLOPS:
            e = estimate(gpu=gpu)
            print(f"{gpu}: about {e['estimated_minutes']:.0f} min per DPO run ({e['dpo_steps']} steps) -- an ESTIMATE, "
                  "not a measurement")
        return 0
    profile = _profile(args)
    if args.command == "student":
        from .sft import build_student

        t = time.perf_counter()
        path = build_student(profile, progress=True)
        print(f"student ready in {time.perf_counter() - t:.0f} s: {path}")
        return 0
    from .runner import grid, record_path, run_gpu_grid

    for name in (list(GRIDS) if args.grid == "all" else [args.grid]):
        if args.command == "run":
            run_gpu_grid(name, args.seeds, profile=profile, judge=args.judge, force=args.force)
        rows = []
        for config in grid(name, args.seeds, profile):
            path = record_path(config, profile, judge=args.judge)
            if path.exists():
                m = json.loads(path.read_text())["metrics"]
                rows.append({"run": config.label(), "LC": round(m["lc_win_rate"], 2), "WR": round(m["win_rate"], 2),
                             "acc r": round(m["reward_accuracy"], 3), "acc p": round(m["policy_accuracy"], 3),
                             "len": round(m["mean_length_tokens"], 1), "degenerate": m["degenerate"]})
        import pandas as pd

        print(f"\n== {name} (gpu, judge {args.judge}): {len(rows)} records")
        if rows:
            print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
