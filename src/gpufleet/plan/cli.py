"""``gpufleet plan CONFIG_OR_DIR --gpu SKU``: options mapped onto ``gpufleet.plan.plan``, report printed."""

from __future__ import annotations

import argparse
import sys

STDOUT = "-"  # --json - : the JSON report on stdout instead of the table
DTYPES = ("bf16", "fp16", "fp8", "int8", "int4")
KV_DTYPES = ("bf16", "fp16", "fp8")


def cmd_plan(args: argparse.Namespace) -> int:
    from gpufleet import plan as api

    report = api.plan(
        args.model,
        args.gpu,
        gpus_per_node=args.gpus_per_node,
        context=args.context,
        concurrency=args.concurrency,
        dtype=args.dtype,
        kv_dtype=args.kv_dtype,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_nodes=args.max_nodes,
        json_report=None if args.json_report in (None, STDOUT) else args.json_report,
    )
    if args.json_report == STDOUT:
        sys.stdout.write(api.render_json(report))
    else:
        print(api.render_table(report))
    return 0 if report["fits"] else 1


def add_parser(sub) -> None:
    """Add ``plan`` to the ``gpufleet`` subparsers ``sub``."""
    parser = sub.add_parser(
        "plan",
        help="size LLM serving: weights, KV cache, tensor/pipeline parallel size, GPUs and nodes",
        description="Say what hardware a model needs to be served: parameters, weights by dtype or "
        "quantization, KV cache per token and for the requested context x concurrency, activations and "
        "runtime reserve, the smallest tensor-parallel size that fits (pipeline stages across nodes beyond "
        "one), GPUs and nodes, and the most concurrent sequences. Every figure says how it was computed. "
        "Exit status 0 fits, 1 does not fit, 2 bad input.",
    )
    parser.add_argument("model", metavar="CONFIG_OR_DIR", help="a model's config.json, or its directory")
    parser.add_argument("--gpu", required=True, help='GPU SKU, e.g. "H100 SXM", "H200" (case-insensitive)')
    parser.add_argument("--gpus-per-node", type=int, default=8, metavar="N", help="GPUs per node (default 8)")
    parser.add_argument(
        "--context", type=int, default=8192, metavar="TOKENS", help="tokens per sequence (8192)"
    )
    parser.add_argument("--concurrency", type=int, default=16, metavar="N", help="sequences at once (16)")
    parser.add_argument("--dtype", choices=DTYPES, help="weight dtype (default: from config.json)")
    parser.add_argument("--kv-dtype", choices=KV_DTYPES, help="KV cache dtype (default: the model's 16-bit)")
    parser.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=0.90,
        metavar="RATIO",
        help="share of GPU memory the engine may use, as vLLM's option (0.90)",
    )
    parser.add_argument(
        "--max-nodes", type=int, default=8, metavar="N", help="most nodes a pipeline layout may span (8)"
    )
    parser.add_argument(
        "--json",
        dest="json_report",
        metavar="FILE",
        help="write the JSON report here ('-' for stdout, no table)",
    )
    parser.set_defaults(func=cmd_plan)
