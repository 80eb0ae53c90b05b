"""`texscribe export --format onnx`: a model file -> encoder/decoder ONNX graphs for onnxruntime."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX (optionally int8-quantised)",
        description="Write encoder.onnx, decoder_init.onnx, decoder_step.onnx, model.json and vocab.json "
        "into --out; load them with `--backend onnx --model DIR` (predict, evaluate, serve).",
    )
    parser.add_argument("--model", default="default", help="shipped name or model file (.pt)")
    parser.add_argument("--format", default="onnx", choices=["onnx"], help="export format (onnx)")
    parser.add_argument("--out", required=True, help="output folder (created; existing files are replaced)")
    parser.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantisation of the weights")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the tested one)")
    parser.add_argument("--no-check", action="store_true", help="skip comparing onnxruntime with torch")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from texscribe.onnx_backend import OPSET, check_export, export_model_file

    result = export_model_file(args.model, args.out, quantize=args.quantize, opset=args.opset or OPSET)
    for name, size in result.files.items():
        print(f"{result.out_dir / name}\t{size / 1024:.1f} KiB")
    print(f"exported in {result.seconds:.1f} s{' (int8)' if result.quantized else ''}")
    if not args.no_check:
        report = check_export(args.model, args.out)
        print(report)
    return 0
