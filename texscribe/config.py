"""One config system: YAML files mapped onto dataclasses, with strict key checking.

A preset (`configs/<name>.yaml`, shipped inside the package) or any YAML path is loaded, then
`key.sub=value` overrides from the command line are applied. Unknown keys raise `ConfigError`
naming the dotted field, so a typo never silently falls back to a default.

Two ways in: `load_config` for what a user writes (a key of an older version is an error naming its
replacement), `stored_config` for a config saved inside a model file or training checkpoint (keys of
older versions are mapped onto their replacements or dropped, so old files keep loading).
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from texscribe.errors import ConfigError

T = TypeVar("T")

PRESET_PACKAGE = "texscribe.configs"


@dataclass
class ModelConfig:
    """Encoder and decoder are `{name: <registry name>, ...constructor kwargs}`; the registry checks the kwargs."""

    d_model: int = 256
    encoder: dict[str, Any] = field(default_factory=lambda: {"name": "densenet"})
    decoder: dict[str, Any] = field(default_factory=lambda: {"name": "transformer"})


@dataclass
class DataConfig:
    """Where prepared datasets live and how images become batches."""

    train: list[str] = field(default_factory=list)
    val: str | None = None
    img_min_height: int = 16
    img_max_height: int = 256
    img_max_width: int = 1024
    scale: float = 1.0
    # symbol height (px, see images.measure_ink) the model was trained at; inputs measuring more than
    # ink_height_tolerance times off it either way are rescaled to it first (None: no ink-size normalisation)
    ink_height: float | None = None
    ink_height_tolerance: float = 1.5
    ink_pen: float = 3.8  # stroke width (px) that rescaled writing is given, at the ink_height scale
    # further symbol heights (px) to read each input at besides ink_height; the most confident reading is
    # kept (test-time scale ensemble: images.preprocess_views). [] reads once. Needs ink_height.
    read_ink_heights: list[float] = field(default_factory=list)
    max_label_len: int = 200
    batch_max_pixels: int = 400_000
    batch_max_size: int = 16
    size_buckets: int | None = None  # k: pad training batches into k k-means-learned shapes (None: any)
    num_workers: int = 0
    # decoded training/validation images kept in memory as uint8 after their first read (per loader worker)
    image_cache_mb: int = 2048
    augment: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 3e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9
    scheduler: str = "cosine"
    warmup_steps: int = 500
    milestones: list[int] = field(default_factory=list)  # multistep: epochs at which lr *= gamma
    gamma: float = 0.1
    min_lr_ratio: float = 0.01  # cosine decays to lr * min_lr_ratio


@dataclass
class MeanTeacherConfig:
    """Semi-supervised mean teacher (Tarvainen & Valpola 2017); see `texscribe.training.mean_teacher`.

    The teacher is an EMA of the student's weights; the student is also trained to match the teacher's
    token distributions on a second augmented view of images from `unlabelled` (prepared dataset
    folders, labels ignored; empty = the training sets' images). The teacher is what is validated
    and exported.
    """

    enabled: bool = False
    ema_decay: float = 0.999
    consistency_weight: float = 1.0  # weight of the consistency loss after the ramp-up
    rampup_steps: int = 1000  # sigmoid ramp exp(-5 (1 - t)^2) of the weight over these steps
    unlabelled: list[str] = field(default_factory=list)
    batch_size: int = 8  # images per consistency batch (two views each), under data.batch_max_pixels
    max_len: int = 100  # longest teacher pseudo-label in tokens


@dataclass
class TrainConfig:
    out_dir: str = "runs"
    run_name: str | None = None
    seed: int = 7
    max_epochs: int = 100
    max_steps: int = -1
    max_time: str | None = None
    precision: str = "auto"  # auto: bf16-mixed on a GPU that supports it, else 32-true
    accelerator: str = "auto"
    devices: int | str = "auto"  # per node
    num_nodes: int = 1  # machines; with ddp each runs `devices` processes (launch: README, "Multi-node")
    strategy: str = "auto"
    grad_clip: float = 1.0
    label_smoothing: float = 0.1
    val_every_n_epochs: int = 1
    val_every_n_steps: int | None = None  # validate every N training batches instead (long epochs)
    val_limit: int | None = None
    early_stop_patience: int | None = None
    bidirectional: bool = False
    log_every_n_steps: int = 20
    progress_bar: bool = True  # Lightning's bar; off when the output goes to a log file
    checkpoint_every_n_steps: int = 500  # last.ckpt also every N optimizer steps ...
    checkpoint_every_minutes: float | None = 10.0  # ... or every M minutes, whichever comes first
    # also keep a copy of the whole training state every M minutes as snapshots/step-N.ckpt (None: off):
    # the points of a learning curve (benchmarks/accuracy_per_hour.py) and weights to average at export
    snapshot_every_minutes: float | None = None
    mean_teacher: MeanTeacherConfig = field(default_factory=MeanTeacherConfig)


@dataclass
class Config:
    name: str = "unnamed"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Keys of older versions -> what replaced them (said to a user who writes one). A stored config holding one
# is upgraded by `upgrade_stored` instead.
RETIRED_KEYS: dict[str, str] = {
    "train.teacher_forcing": "use model.decoder.teacher_forcing (the decoder's scheduled-sampling ratio)",
    "train.val_beam": "delete it: validation decodes greedily (it was never read); "
    "`texscribe evaluate --beam N` scores beam search",
}


def upgrade_stored(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored config dict (a model file's, a checkpoint's `hyper_parameters`) without the
    `RETIRED_KEYS`, each mapped onto the key that replaced it where it changed behaviour.

    train.teacher_forcing below 1 overrode the decoder's own ratio in training; it becomes
    model.decoder.teacher_forcing. At 1 (its default) it deferred to the decoder and is dropped.
    """
    data = copy.deepcopy(data)
    train = data.get("train")
    if isinstance(train, dict):
        ratio = train.pop("teacher_forcing", None)
        decoder = data.get("model", {}).get("decoder")
        if isinstance(ratio, int | float) and ratio < 1.0 and isinstance(decoder, dict):
            decoder["teacher_forcing"] = ratio
        train.pop("val_beam", None)
    return data


def stored_config(data: dict[str, Any]) -> Config:
    """The `Config` of a stored config dict, which may come from an older version (`upgrade_stored`).
    Types are checked; values are not (the config describes a model that exists)."""
    return from_dict(Config, upgrade_stored(data))


def list_presets() -> list[str]:
    """Names of the YAML presets shipped inside the package."""
    root = resources.files(PRESET_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def read_yaml(path_or_preset: str | Path) -> dict[str, Any]:
    """Read a YAML file, or a shipped preset when given a bare name like `model1`."""
    path = Path(path_or_preset)
    if path.suffix not in {".yaml", ".yml"} and not path.exists():
        preset = resources.files(PRESET_PACKAGE) / f"{path_or_preset}.yaml"
        if not preset.is_file():
            raise ConfigError(
                f"unknown preset {str(path_or_preset)!r}; shipped presets: {', '.join(list_presets())}"
            )
        text = preset.read_text(encoding="utf-8")
        source = f"preset {path_or_preset}"
    else:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        text = path.read_text(encoding="utf-8")
        source = str(path)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` strings (value parsed as YAML) onto a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {key}: cannot parse value {raw!r}: {exc}") from exc
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {part!r} is not a section")
        node[parts[-1]] = value
    return data


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from `data`, rejecting unknown keys and wrong types by dotted name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    for key in unknown:
        if _join(where, key) in RETIRED_KEYS:
            raise ConfigError(
                f"config key {_join(where, key)!r} was retired: {RETIRED_KEYS[_join(where, key)]}"
            )
    if unknown:
        raise ConfigError(
            f"unknown config key {_join(where, unknown[0])!r}; valid keys here: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, _join(where, name))
    return cls(**kwargs)


def load_config(path_or_preset: str | Path, overrides: list[str] | None = None) -> Config:
    """The one entry point: preset/YAML + overrides -> validated `Config` (keys, types and values)."""
    data = apply_overrides(read_yaml(path_or_preset), overrides or [])
    config = from_dict(Config, data)
    check_values(config)
    return config


def with_data_overrides(config: Config, overrides: Sequence[str]) -> Config:
    """`config` with `data.*` overrides (`data.KEY=VALUE`) applied and validated like a training config's:
    how a trained model reads images (export's and evaluate's `--set`). `ConfigError` naming an override
    outside `data.` or a wrong key or value; the model section describes the weights and cannot change."""
    outside = [o for o in overrides if not o.strip().startswith("data.")]
    if outside:
        raise ConfigError(
            f"--set {outside[0]!r}: only data.* settings (how images are read) can change for a trained "
            "model; the model section describes the weights"
        )
    changed = from_dict(Config, apply_overrides(dataclasses.asdict(config), list(overrides)))
    check_values(changed)
    return changed


def _at_least(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= low), f">= {low}"


_POSITIVE = ((lambda v: v > 0), "> 0")
_FRACTION = ((lambda v: 0 <= v <= 1), "between 0 and 1")
_LIMIT = ((lambda v: v >= 1 or v == -1), ">= 1, or -1 for no limit")
# dotted field -> (test, what is valid); None passes wherever the type allows it (the feature is off)
VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.img_min_height": _at_least(1), "data.img_max_height": _at_least(1),
    "data.img_max_width": _at_least(1), "data.scale": _POSITIVE, "data.max_label_len": _at_least(1),
    "data.batch_max_pixels": _at_least(1), "data.batch_max_size": _at_least(1),
    "data.size_buckets": _at_least(1), "data.num_workers": _at_least(0), "data.image_cache_mb": _at_least(0), "data.ink_height": _POSITIVE,
    "data.ink_height_tolerance": _at_least(1), "data.ink_pen": _POSITIVE,
    "optim.lr": _POSITIVE, "optim.weight_decay": _at_least(0), "optim.momentum": _FRACTION,
    "optim.warmup_steps": _at_least(0), "optim.gamma": _POSITIVE, "optim.min_lr_ratio": _FRACTION,
    "train.max_epochs": _LIMIT, "train.max_steps": _LIMIT, "train.grad_clip": _at_least(0),
    "train.label_smoothing": ((lambda v: 0 <= v < 1), ">= 0 and < 1"),
    "train.val_every_n_epochs": _at_least(1), "train.val_every_n_steps": _at_least(1),
    "train.val_limit": _at_least(1), "train.num_nodes": _at_least(1),
    "train.early_stop_patience": _at_least(0),
    "train.log_every_n_steps": _at_least(1), "train.checkpoint_every_n_steps": _at_least(0),
    "train.checkpoint_every_minutes": _at_least(0),
    "train.snapshot_every_minutes": _POSITIVE,
    "train.mean_teacher.ema_decay": _FRACTION, "train.mean_teacher.consistency_weight": _at_least(0),
    "train.mean_teacher.rampup_steps": _at_least(0), "train.mean_teacher.batch_size": _at_least(1),
    "train.mean_teacher.max_len": _at_least(1),
}  # fmt: skip


def check_values(config: Config) -> None:
    """Range checks of the fields a run uses (`VALUE_RULES`, `train.precision`): `ConfigError` naming the
    field, its value and what is valid. Types were checked by `from_dict`; a model file's config is not
    range-checked (it only describes the model)."""
    for name, (valid, expected) in VALUE_RULES.items():
        value = _get(config, name)
        if value is not None and not valid(value):
            raise ConfigError(f"{name}: must be {expected}, got {value!r}")
    ratio = config.model.decoder.get("teacher_forcing")
    if isinstance(ratio, int | float) and not 0 <= ratio <= 1:
        raise ConfigError(f"model.decoder.teacher_forcing: must be between 0 and 1, got {ratio!r}")
    bad = [h for h in config.data.read_ink_heights if not h > 0]
    if bad:
        raise ConfigError(f"data.read_ink_heights: every height must be > 0 (px), got {bad[0]!r}")
    if config.data.read_ink_heights and config.data.ink_height is None:
        raise ConfigError(
            "data.read_ink_heights: needs data.ink_height (the reading heights are alternatives to it); "
            f"got {config.data.read_ink_heights} with data.ink_height null"
        )
    if config.data.img_max_height < config.data.img_min_height:
        raise ConfigError(
            f"data.img_max_height: must be >= data.img_min_height ({config.data.img_min_height}), "
            f"got {config.data.img_max_height}"
        )
    tc = config.train
    if tc.max_time is not None and not re.fullmatch(r"\d+:\d\d:\d\d:\d\d", tc.max_time.strip()):
        raise ConfigError(
            f"train.max_time: must look like DD:HH:MM:SS (e.g. 00:08:00:00), got {tc.max_time!r}"
        )
    if tc.max_epochs == -1 and tc.max_steps == -1 and config.optim.scheduler in ("cosine", "onecycle"):
        raise ConfigError(
            f"train.max_epochs: the {config.optim.scheduler} schedule needs a length; set train.max_epochs "
            "or train.max_steps >= 1 (both are -1, no limit), or use optim.scheduler=constant"
        )
    precisions = lightning_precisions()
    if precisions and str(tc.precision) not in precisions:
        raise ConfigError(f"train.precision: got {tc.precision!r}; valid: {', '.join(precisions)}")


def lightning_precisions() -> list[str]:
    """`auto` and every precision the installed Lightning accepts (`32-true`, `bf16-mixed`, `16`, ...);
    [] without Lightning (training is not installed, nothing to check against)."""
    try:
        from lightning.fabric.connector import _PRECISION_INPUT
    except ImportError:
        return []

    def flat(tp: Any) -> list[str]:  # Union[Literal[64, 32, 16], Literal["32-true", ...], ...] -> values
        return [v for arg in typing.get_args(tp) for v in (flat(arg) if typing.get_args(arg) else [str(arg)])]

    return ["auto", *dict.fromkeys(flat(_PRECISION_INPUT))]


def _get(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
        # YAML 1.1 reads `1e-4` (no dot) as a string; everyone writes learning rates that way.
        return float(value)
    if tp is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # YAML reads `train.precision=32` or `run_name=2024` as a number
    if tp in (int, float, str, bool):
        if isinstance(value, bool) and tp is not bool:
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    return value
