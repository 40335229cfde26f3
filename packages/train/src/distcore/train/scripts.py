"""The ``distcore-train`` command. Subcommands are added by :data:`CLI`.add(...).

``distcore-train run --num-workers N [--use-gpu] script.py [args...]`` runs an
unmodified torchrun-style script (one that reads RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT and calls ``init_process_group``) as a gang on the
cluster, streaming each rank's output with its rank prefix.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import distcore
from distcore.scripts.cli import CommandLine
from distcore.train import __version__

CLI = CommandLine(
    prog="distcore-train",
    version=f"distcore-train {__version__} (distcore {distcore.__version__})",
    description="Run training jobs as a gang of workers on a distcore cluster.",
)


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-workers", "--nproc-per-node", "--nproc_per_node", dest="num_workers", type=int,
                        required=True, help="number of ranks (worker processes)")
    parser.add_argument("--use-gpu", action="store_true", help="give each rank one GPU (CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs reserved per rank (default 1)")
    parser.add_argument("--address", default=None,
                        help="cluster to run on (host:port or 'auto'); default: $DISTCORE_ADDRESS or a new local one")
    parser.add_argument("--master-port", type=int, default=None, help="MASTER_PORT (default: a free port)")
    parser.add_argument("script", help="the training script (torchrun-style)")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments passed to the script")


def _run(args: argparse.Namespace) -> int:
    from distcore.train._internal.errors import InsufficientResourcesError
    from distcore.train._internal.launcher import launch

    if args.num_workers < 1:
        print(f"distcore-train run: --num-workers must be >= 1, got {args.num_workers}", file=sys.stderr)
        return 2
    try:
        distcore.init(address=args.address) if args.address else distcore.init()
        return launch(args.script, list(args.script_args), num_workers=args.num_workers, use_gpu=args.use_gpu,
                      cpus_per_worker=args.cpus_per_worker, master_port=args.master_port)
    except (FileNotFoundError, InsufficientResourcesError, ValueError) as exc:
        print(f"distcore-train run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if distcore.is_initialized():
            distcore.shutdown()


CLI.add("run", "run a torchrun-style script on N workers (ranks) of the cluster", _run, _configure_run)


def main(argv: Sequence[str] | None = None) -> int:
    return CLI.main(argv)


if __name__ == "__main__":
    sys.exit(main())
