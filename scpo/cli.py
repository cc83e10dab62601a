"""The ``scpo`` command.

    scpo run --dataset goqa --data-dir /path/to/globalopinionqa --countries all \
        --variants all --seeds 0 1 2 --out results/
    scpo run --preset paper --data-dir /data/prism --out results/paper --export models/paper
    scpo export --results <country notebooks results_dir> --country Chile --out models/chile
    scpo bon --model models/chile --data-dir /data/prism --country Chile   # best-of-N picks
    scpo pairs --dataset sim               # pair counts per country and split, and what was dropped
    scpo simulate --preset default --out data/sim
    scpo fetch DIR                         # PRISM, GlobalOpinionQA and the RMs, pinned, into DIR
    scpo presets
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from scpo.config import PARAMS, Config, describe, from_params, help_text, list_presets

# the command line's flags for config.PARAMS (their help is the field's own, config.setting)
FLAGS: list[tuple[str, str, dict]] = [
    ("--dataset", "dataset", {"choices": ["sim", "prism", "goqa"]}),
    ("--data-dir", "data_dir", {}),
    ("--countries", "countries", {"nargs": "+"}),
    ("--variants", "variants", {"nargs": "+"}),
    ("--seeds", "seeds", {"nargs": "+", "type": int}),
    ("--backend", "backend", {"choices": ["embedding", "partial", "hf"]}),
    ("--tau", "tau", {"type": float}),
    ("--beta", "beta", {"type": float}),
]


OVERWRITE_HELP = ("write into a non-empty folder scpo did not make, replacing only the files "
                  "of this output there (without it such a folder is refused)")


def build_config(args: argparse.Namespace) -> Config:
    """The preset, the flags and ``--set`` (``config.from_params``, as the notebooks build it)."""
    return from_params(args.preset, sets=args.set or (), where="command line",
                       export_dir=getattr(args, "export", None),
                       **{name: getattr(args, name, None) for _, name, _ in FLAGS})


def _add_model_args(p: argparse.ArgumentParser, resampled: str) -> None:
    """The flags of the commands that score a model a user brings (carb, bon)."""
    p.add_argument("--model", required=True, help="a model scpo saved or exported, or any HF "
                   "reward model (directory or hub id)")
    p.add_argument("--max-length", dest="max_length", type=int, default=512,
                   help="tokens per input for a Hugging Face model (default 512)")
    p.add_argument("--n-boot", dest="n_boot", type=int, default=1000,
                   help=f"bootstrap resamples of {resampled} for the 95%% intervals")
    p.add_argument("--out", help="also write the table as csv (a new file)")
    p.add_argument("--overwrite", action="store_true", help="replace the --out file if it "
                   "exists (without it an existing file is refused)")


def _check_table_out(args: argparse.Namespace) -> None:
    """``--out`` may be written, before any work: a new file, or an existing one with
    ``--overwrite``; never a folder."""
    if not args.out:
        return
    path = Path(args.out)
    if path.is_dir():
        raise IsADirectoryError(f"--out {path} is a folder; give a file name, e.g. "
                                f"{path / (args.command + '.csv')}")
    if os.path.lexists(path) and not args.overwrite:
        raise FileExistsError(f"--out {path} exists; pass --overwrite to replace it, or choose "
                              "another file")


def _write_table(table: Any, out: str) -> None:
    """The table as csv at ``out``, written whole (a temporary file, then a rename)."""
    from scpo.outdir import write_file_atomically

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(Path(out), lambda p: table.to_csv(p, index=False))
    print(f"written to {out}")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help=f"a preset name ({', '.join(list_presets())}) or a .toml path")
    for flag, name, kw in FLAGS:
        section, key = PARAMS[name]
        p.add_argument(flag, **kw, dest=name,
                       help=f"{help_text(section, key)} ({section}.{key})".replace("%", "%%"))
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="any config field, e.g. --set train.lr=3e-4 (repeatable)")


def cmd_run(args: argparse.Namespace) -> None:
    from scpo.experiment import run

    cfg = build_config(args)
    t0 = time.perf_counter()
    results, _, _ = run(cfg, args.out, overwrite=args.overwrite)
    from scpo.companion.report import main_table
    from scpo.models.device import is_main_process

    if not is_main_process():  # torchrun / accelerate launch: rank 0 reports
        return

    print(main_table(results).to_string())
    print(f"\n{len(results)} rows written to {args.out} in {time.perf_counter() - t0:.1f} s")
    if cfg.run.export_dir:
        print(f"minority RMs exported under {cfg.run.export_dir} (list: {args.out}/exported.json)")


def cmd_conditioned(args: argparse.Namespace) -> None:
    from scpo.companion import conditioned
    from scpo.outdir import check_writable
    from scpo.results import check_results_dir, run_record
    from scpo.scoring import prepare

    cfg = build_config(args)
    out = Path(args.out)
    check_results_dir(out, args.overwrite,  # before any work: write_conditioned's files
                      names=("results.parquet", "results.csv", "counts.csv", "run.json"))
    if args.export:
        check_writable(args.export, overwrite=args.overwrite, what="exported checkpoints")
    prep = prepare(cfg)
    run_ = conditioned.run_conditioned(prep, prep.countries, cfg.run.seeds,
                                       leave_out=args.leave_out, export_dir=args.export,
                                       progress=True, overwrite=args.overwrite)
    record = {**run_record(prep), "conditioned": {
        "leave_out": args.leave_out or [], "n_parameters": run_.n_parameters,
        "per_country_parameters": run_.per_country_parameters}}
    conditioned.write_conditioned(out, run_.results, run_.counts, record, args.overwrite)
    table = run_.results.pivot_table(index=["country", "variant"], columns="test_set",
                                     values="accuracy")
    print((100 * table).round(1).to_string())
    print(f"\none model for {len(prep.countries)} countries: {run_.n_parameters} trained numbers "
          f"(the per-country models: {run_.per_country_parameters}); rows in {out}"
          + (f"; checkpoints under {args.export}" if args.export else ""))
    if run_.pool_without:
        print(f"left out of the global RM's training pool too: {run_.pool_without} (it started "
              "from a global RM trained without them; its rows: variant 'global_loo')")


def cmd_export(args: argparse.Namespace) -> None:
    from scpo.results import export_saved

    path = export_saved(args.results, args.country, args.variant, args.seed, args.out,
                        overwrite=args.overwrite)
    print(f"exported to {path}: load it with AutoModelForSequenceClassification.from_pretrained")


def cmd_pairs(args: argparse.Namespace) -> None:
    from scpo.data import load_pairs

    data = load_pairs(build_config(args).data)
    print(data.countries().to_string())
    print(json.dumps(data.report, indent=1, default=str))


def cmd_carb(args: argparse.Namespace) -> None:
    from scpo import models
    from scpo.companion.carb import carb_report, describe_cue, in_percent, load_carb

    _check_table_out(args)
    items = load_carb(args.data_dir, hub_id=args.hub_id, revision=args.revision)
    rm = models.for_country(models.load_any(args.model, max_length=args.max_length),
                            args.country)
    table, cue = carb_report(rm, items, country=args.country, by=args.by, n_boot=args.n_boot)
    print(in_percent(table).to_string(index=False))
    print(f"\n{len(items)} items; best-of-N accuracy and chance in %.\n{describe_cue(cue)}")
    if args.out:
        _write_table(table.assign(model=args.model,
                                  **{f"length_{k}": v for k, v in cue.items()}), args.out)


def cmd_bon(args: argparse.Namespace) -> None:
    from scpo import models
    from scpo.companion import bon

    _check_table_out(args)
    items, report = bon.turn_items(args.data_dir, test_frac=args.test_frac,
                                   split_seed=args.split_seed, prompt_context=args.prompt_context)
    if args.country:
        if args.country not in set(items["country"]):
            raise ValueError(f"--country {args.country!r}: no test turn of that country in "
                             f"{args.data_dir}; it has {sorted(items['country'].unique())}")
        items = items[items["country"] == args.country].reset_index(drop=True)
    rm = models.for_country(models.load_any(args.model, max_length=args.max_length),
                            args.country)
    per = bon.evaluate_picks(items, bon.item_rewards(rm, items))
    table = bon.summarize(per, by=("country",), n_boot=args.n_boot)
    print(bon.cli_table(table).to_string())
    print(f"\n{len(per)} test turns of {report['n_turns']} (ties at the model's top reward: "
          f"{int((per['n_tied'] > 1).sum())}, broken by candidate id; turns whose top user score "
          f"is shared: {report['turns_with_tied_top_score']}, a pick of any of them agrees); "
          "top-choice agreement and its chance in %, 95% intervals over users")
    if args.out:
        _write_table(table.assign(model=args.model), args.out)


def cmd_fetch(args: argparse.Namespace) -> None:
    from scpo.companion.fetch import MANIFEST, fetch

    manifest = fetch(args.dir, only=args.only, pins=args.pins)
    print(f"{len(manifest['inputs'])} inputs recorded in {Path(args.dir) / MANIFEST}")


def cmd_simulate(args: argparse.Namespace) -> None:
    from scpo.outdir import replace_dir
    from scpo.simulate import FILES, sim_config, simulate

    # test users get their own responses: the simulator must split users as the loader will
    config = sim_config(args.preset, test_frac=args.test_frac, split_seed=args.split_seed)
    path = replace_dir(args.out, lambda tmp: simulate(config, tmp), overwrite=args.overwrite,
                       what="simulation", legacy=FILES)
    print(f"simulated PRISM-format data written to {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scpo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train and evaluate every variant; write tidy results")
    _add_config_args(p)
    p.add_argument("--out", required=True, help="results directory")
    p.add_argument("--export", metavar="DIR", help="hf tier: save each trained minority RM of "
                   "run.export_variants as a HF checkpoint with a model card under DIR")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("conditioned", help="train one country-conditioned RM on every "
                       "country's SCPO pairs and evaluate it asked for each country")
    _add_config_args(p)
    p.add_argument("--out", required=True, help="results directory (rows as `scpo run` writes)")
    p.add_argument("--leave-out", dest="leave_out", nargs="+", metavar="COUNTRY",
                   help="countries left out of training, evaluated as 'conditioned_loo'")
    p.add_argument("--export", metavar="DIR", help="hf/partial tiers: write the model as a "
                   "standard checkpoint (the country goes into the prompt; see its card)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=cmd_conditioned)
    p = sub.add_parser("export", help="export a minority RM saved by a country notebook as a "
                       "standard HF checkpoint with a model card")
    p.add_argument("--results", required=True, help="results directory of the country notebooks")
    p.add_argument("--country", required=True)
    p.add_argument("--variant", default="scpo_fw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="directory to write the checkpoint to")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("pairs", help="build the pair table and print its counts")
    _add_config_args(p)
    p.set_defaults(func=cmd_pairs)
    p = sub.add_parser("simulate", help="write simulated PRISM-format data")
    p.add_argument("--preset", default="default", help="the preset whose [data.sim] table sets "
                   "the simulator's knobs (default: its defaults)")
    p.add_argument("--out", required=True)
    p.add_argument("--test-frac", dest="test_frac", type=float, default=0.15,
                   help="the data.test_frac the data will be loaded with (default 0.15)")
    p.add_argument("--split-seed", dest="split_seed", type=int, default=0,
                   help="the data.split_seed the data will be loaded with (default 0)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("config", help="print every setting of a preset (with --set applied), "
                       "its value and what it does")
    _add_config_args(p)
    p.set_defaults(func=lambda a: print(describe(build_config(a))))
    p = sub.add_parser("carb", help="best-of-N accuracy of a reward model on CARB-format "
                       "items (a cultural reward benchmark), per language and domain")
    _add_model_args(p, resampled="items")
    p.add_argument("--data-dir", dest="data_dir", help="a directory of CARB-format .json/.jsonl")
    p.add_argument("--hub-id", dest="hub_id", help="or a hub dataset id in that format")
    p.add_argument("--revision", help="hub revision of --hub-id")
    p.add_argument("--country", help="split the items into this PRISM country's and the rest")
    p.add_argument("--by", nargs="*", default=["language", "domain"],
                   help="columns to group by (default: language domain)")
    p.set_defaults(func=cmd_carb)
    p = sub.add_parser("bon", help="best-of-N: how often a reward model picks the response "
                       "a test user scored highest, among the turn's rated responses")
    _add_model_args(p, resampled="users")
    p.add_argument("--data-dir", dest="data_dir", required=True,
                   help="PRISM-format data (utterances.jsonl, survey.jsonl): PRISM or a "
                   "simulation (then also the noise-free truth of the pick)")
    p.add_argument("--country", help="only this country's test turns (PRISM's spelling)")
    p.add_argument("--test-frac", dest="test_frac", type=float, default=0.15,
                   help="the test users' share of the survey rows (data.test_frac; default 0.15)")
    p.add_argument("--split-seed", dest="split_seed", type=int, default=0,
                   help="the split's seed (data.split_seed; default 0)")
    p.add_argument("--prompt-context", dest="prompt_context", default="turn",
                   choices=["turn", "history"], help="the prompt a response is scored with "
                   "(data.prompt_context; default: the turn's prompt alone)")
    p.set_defaults(func=cmd_bon)
    p = sub.add_parser("fetch", help="download the real inputs (PRISM, GlobalOpinionQA, the "
                       "paper's global RM, the authors' country RMs) at their pinned revisions "
                       "into a data directory, recorded in its MANIFEST.json")
    p.add_argument("dir", help="the data directory (SCPO_DATA_DIR=DIR make book reads it)")
    p.add_argument("--only", nargs="+", metavar="INPUT",
                   help="these inputs only (prism, goqa, global_rm, authors-<country>)")
    p.add_argument("--pins", help="another pins file (default: the package's scpo/pins.toml)")
    p.set_defaults(func=cmd_fetch)
    p = sub.add_parser("presets", help="list the presets")
    p.set_defaults(func=lambda a: print("\n".join(list_presets())))
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (KeyError, ValueError, OSError) as e:  # missing files, the hub out of reach
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"scpo: error: {msg}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
