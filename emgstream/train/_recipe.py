"""Training recipes: one TOML file says what data, which model, which stages, which seed.

```toml
name = "default"
seed = 0
out = "runs/default"            # relative to the recipe file
aligned = "align-cpep"          # which alignment the deployed model is made from

[data]                          # DataConfig
[model]                         # ModelConfig
[stages.mae-emg]                # StageConfig (+ stage options in [stages.NAME.options])
[stages.mae-pose]
[stages.align-cpep]
[stages.align-embridge]
[stages.head]
[stages.finetune]               # after the head: supervised end-to-end (see _finetune.py)
```
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .._checks import shown
from ._trainer import StageConfig

STAGES = ("mae-emg", "mae-pose", "align-cpep", "align-embridge", "head", "finetune")
_MAX_RECIPE_BYTES = 1 << 20


@dataclass
class DataConfig:
    """Where the windows come from and how they are cut.

    ``source="synth"``: users made in memory by :mod:`emgstream.synth` (``users`` in all,
    the last ``test_users`` never trained on, the ``probe_users`` before them used only to
    fit the unseen-gesture probes and bank; ``sessions``, ``seconds``, ``unseen_seconds``).

    ``source="recordings"``: emg2pose-layout HDF5 files (ours, ``emgstream synth``'s, or the
    emg2pose dataset's), read lazily by the DataLoader's workers. ``root`` is a folder
    (every ``*.hdf5`` / ``*.h5`` under it) or a glob, relative to the recipe file. Each file's
    user (its ``user`` attribute) goes to the first of ``test``, ``probe``, ``train`` whose
    user names or glob patterns match it; unmatched users are left out. ``unseen`` names the
    classes no training window may touch (the zero-shot gestures). Files must be
    ``n_channels`` at ``sample_rate``; unlabelled files (emg2pose) can pre-train the
    encoders, but a recipe with a ``head`` stage needs labelled ones.

    Both: windows of ``window`` samples every ``stride`` samples, filtered by the live chain.
    """

    source: str = "synth"
    root: str | None = None
    train: list[str] = field(default_factory=lambda: ["*"])
    probe: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    unseen: list[str] = field(default_factory=list)
    n_channels: int = 16
    sample_rate: float = 2000.0
    users: int = 12
    probe_users: int = 2
    test_users: int = 2
    sessions: int = 2
    seconds: float = 60.0  #: per session of the training gestures
    unseen_seconds: float = 30.0  #: per session of the unseen gestures (probe and test users)
    window: int = 800  #: samples (400 ms at 2 kHz)
    hop: int = 40  #: live hop in samples (20 ms at 2 kHz)
    stride: int = 200  #: offline stride between training windows
    bandpass: tuple[float, float] | None = (20.0, 450.0)
    notch: float | None = 50.0
    normalisation: str = "instance"
    rotation: int = 1  #: channel-rotation augmentation for EMG training, in electrodes
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in ("synth", "recordings"):
            raise ValueError(f"data source must be 'synth' or 'recordings', got {self.source!r}")
        if self.source == "recordings" and not self.root:
            raise ValueError("data source 'recordings' needs data.root (a folder or a glob)")
        for key in ("train", "probe", "test", "unseen"):
            value = getattr(self, key)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"data.{key} must be a list of strings, got {value!r}")


@dataclass
class ModelConfig:
    """Sizes of the encoders and heads (paper values in ``models/recipes/full.toml``)."""

    emg_patch: int = 50
    emg_features: str = "raw"  #: EMG token inputs, "raw" (CPEP) or "log_power" (see EncoderConfig)
    emg_power_bins: int = 1  #: log-power bins per EMG patch
    pose_patch: int = 200
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    decoder_layers: int = 2
    mask_ratio: float = 0.5
    temperature: float = 0.02
    qformer_queries: int = 8
    qformer_layers: int = 4
    n_communities: int = 32
    community_top_k: int = 3
    community_temperature: float = 0.1
    bank_per_class: int = 200  #: pose embeddings per class kept in the shipped bank


@dataclass
class Recipe:
    name: str
    seed: int = 0
    out: str = "runs/default"
    aligned: str = "align-cpep"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    stages: dict[str, StageConfig] = field(default_factory=dict)
    path: Path | None = None  #: the TOML file it came from
    steps_scale: float = 1.0  #: set by :meth:`scaled` (``emgstream train --steps-scale``)

    @property
    def out_dir(self) -> Path:
        base = self.path.parent if self.path is not None else Path.cwd()
        return (base / self.out).resolve()

    def scaled(self, factor: float) -> "Recipe":
        """The same recipe with every stage's steps (and restart period) times ``factor``."""
        if factor == 1.0:
            return self
        stages = {}
        for name, st in self.stages.items():
            restart = max(1, round(st.restart_steps * factor)) if st.restart_steps else None
            steps = st.steps if name == "head" else max(1, round(st.steps * factor))
            stages[name] = replace(st, steps=steps, restart_steps=restart)
        return replace(self, stages=stages, steps_scale=self.steps_scale * factor)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path) if self.path else None
        return d


def _build(cls, table: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = set(table) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    table = dict(table)
    for key in ("bandpass",):
        if table.get(key) is not None and key in known:
            table[key] = tuple(table[key])
    try:
        return cls(**table)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from err


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a TOML recipe; unknown keys and stages are errors.

    Recipes travel between labs: the file is bounded in size and nesting, and the paths it
    names (``out``, ``data.root``) must stay inside the folder training runs in (the working
    directory) or the recipe's own folder; see :func:`_check_paths`.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_RECIPE_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"recipe {str(path)!r} does not exist") from None
    if len(data) > _MAX_RECIPE_BYTES:
        raise ValueError(f"recipe {path} is over {_MAX_RECIPE_BYTES} bytes; recipes are a "
                         f"few kilobytes of TOML")
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"recipe {path} is not valid TOML: {err}") from err
    except RecursionError:
        raise ValueError(f"recipe {path} nests arrays or tables deeper than the TOML parser "
                         f"follows") from None
    stages_raw = raw.pop("stages", {})
    unknown = set(stages_raw) - set(STAGES)
    if unknown:
        raise ValueError(f"{path}: unknown stages {sorted(unknown)}; stages are {list(STAGES)}")
    stages = {name: _build(StageConfig, stages_raw[name], f"{path} [stages.{name}]")
              for name in STAGES if name in stages_raw}
    data = _build(DataConfig, raw.pop("data", {}), f"{path} [data]")
    model = _build(ModelConfig, raw.pop("model", {}), f"{path} [model]")
    if "name" not in raw:
        raw["name"] = path.stem
    recipe = _build(Recipe, {**raw, "data": data, "model": model, "stages": stages},
                    str(path))
    recipe.path = path.resolve()
    _check_paths(recipe)
    if "finetune" in recipe.stages and "head" not in recipe.stages:
        raise ValueError(f"{path}: the finetune stage starts from the head's linear probe; "
                         "add [stages.head]")
    if recipe.aligned not in ("align-cpep", "align-embridge"):
        raise ValueError(f"{path}: aligned must be 'align-cpep' or 'align-embridge', "
                         f"got {recipe.aligned!r}")
    return recipe


def _check_paths(recipe: Recipe) -> None:
    """Refuse ``out`` and ``data.root`` when they lead out of the working directory and the
    recipe's folder: a recipe from elsewhere must not make training write checkpoints over
    files anywhere on the machine, nor gather the recordings of other projects into a model
    (and its zero-shot bank) that goes back to whoever wrote the recipe.

    The test is on the path as written (``..`` and absolute paths), with symbolic links left
    as they are: links are the user's own filesystem, so a dataset kept elsewhere is used by
    linking it into the run folder. Only the part of a glob before its first wildcard counts.
    """
    folder = recipe.path.parent
    allowed = (Path.cwd(), folder)
    paths = [("out", recipe.out)]
    if recipe.data.root:
        paths.append(("data.root", os.path.expanduser(recipe.data.root)))
    for key, value in paths:
        fixed = []
        for part in Path(value).parts:
            if any(c in part for c in "*?["):
                break
            fixed.append(part)
        target = Path(os.path.normpath(folder.joinpath(*fixed)))
        if not any(target.is_relative_to(base) for base in allowed):
            raise ValueError(
                f"{recipe.path}: {key} = {shown(value)} leads to {target}, outside the folder "
                f"training runs in ({allowed[0]}) and the recipe's folder ({folder}); a recipe "
                f"reads and writes only inside them (link data kept elsewhere into them)")
