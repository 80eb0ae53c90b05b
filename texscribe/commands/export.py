"""`texscribe export`: a model file -> ONNX graphs for onnxruntime, or a training checkpoint -> a model file."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  texscribe export --model default --format onnx --out exports/default-onnx --quantize int8
  texscribe export --model runs/base/checkpoints/last.ckpt --format pt --out runs/base/model_last.pt
  texscribe export --model runs/base/snapshots/step-*.ckpt --format pt --out runs/base/model_avg.pt
  texscribe export --model runs/base/checkpoints/last.ckpt --format pt --out m.pt --set data.ink_height=34
  texscribe export --model m.pt --format pt --out m_multi.pt --set "data.read_ink_heights=[28,42]"
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX (optionally int8-quantised), or a training checkpoint to a model file",
        description="--format onnx: write encoder.onnx, decoder_init.onnx, decoder_step.onnx, model.json and "
        "vocab.json into --out; load them with `--backend onnx --model DIR` (predict, evaluate, serve). "
        "--format pt: turn a training checkpoint (.ckpt) into a model file (.pt) at --out; several "
        "checkpoints of one run are averaged into one model (weights averaging, as SWA). A model file "
        "given with --set is copied with those reading settings (same weights).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        nargs="+",
        default=["default"],
        help="shipped name or model file (.pt); for --format pt one .ckpt, or several to average",
    )
    parser.add_argument("--format", default="onnx", choices=["onnx", "pt"], help="export format (onnx)")
    parser.add_argument(
        "--out", required=True, help="output folder (onnx; created, existing files replaced) or file (pt)"
    )
    parser.add_argument(
        "--quantize", choices=["int8"], help="dynamic int8 quantisation of the weights (onnx)"
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the tested one)")
    parser.add_argument("--no-check", action="store_true", help="skip comparing onnxruntime with torch")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="data.KEY=VALUE",
        help="(pt) how the model file reads images, e.g. data.ink_height=34; recorded in its meta",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.format == "pt":
        return _checkpoint_to_model_file(args)
    from texscribe.errors import ConfigError
    from texscribe.onnx_export import OPSET, check_export, export_model_file

    if args.set:
        raise ConfigError("--set applies to --format pt (export the .pt with it, then that file to ONNX)")
    if len(args.model) > 1:
        raise ConfigError("--format onnx exports one model: give one --model (averaging is for --format pt)")
    model = args.model[0]
    result = export_model_file(model, args.out, quantize=args.quantize, opset=args.opset or OPSET)
    for name, size in result.files.items():
        print(f"{result.out_dir / name}\t{size / 1024:.1f} KiB")
    print(f"exported in {result.seconds:.1f} s{' (int8)' if result.quantized else ''}")
    if not args.no_check:
        report = check_export(model, args.out)
        print(report)
    return 0


def _checkpoint_to_model_file(args: argparse.Namespace) -> int:
    from texscribe.checkpoint import export_checkpoint, is_model_file, with_reading_settings
    from texscribe.errors import ConfigError
    from texscribe.inference import SHIPPED, resolve_model_path

    if args.quantize or args.opset:
        raise ConfigError("--quantize and --opset apply to --format onnx only")
    first = args.model[0]
    if first in SHIPPED or is_model_file(first):
        if len(args.model) > 1:
            raise ConfigError(
                f"{first} is a model file: --format pt averages training checkpoints (.ckpt), not model files"
            )
        if not args.set:
            raise ConfigError(
                f"{first} is already a model file; give --set data.KEY=VALUE to change how it reads "
                "images, or a training checkpoint (.ckpt) to convert"
            )
        out = with_reading_settings(resolve_model_path(first), args.out, args.set)
    else:
        out = export_checkpoint(args.model, args.out, overrides=args.set)
    print(f"{out}\t{out.stat().st_size / 1024:.1f} KiB")
    return 0
