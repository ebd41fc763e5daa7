"""``emgstream train`` and ``emgstream export``: offline training and model files."""

from __future__ import annotations

import time
from pathlib import Path

import click


@click.command()
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also export the trained model to this model file (.emgm).")
@click.option("--threads", type=int, default=None,
              show_default="torch's choice", help="Torch CPU threads.")
@click.option("--steps-scale", type=click.FloatRange(min=0.0, min_open=True), default=1.0,
              show_default=True,
              help="Multiply every stage's steps (and restart period): a shorter run of the "
                   "same recipe; recorded in the model's provenance.")
def train(recipe: Path, output: Path | None, threads: int | None, steps_scale: float) -> None:
    """Train every stage of RECIPE (a TOML file) and write OUT/model.pt.

    Stages: mae-emg, mae-pose, align-cpep, align-embridge, head, finetune. Finished stages are skipped
    and an interrupted stage resumes from its last checkpoint, so running the same command
    again continues. Multi-GPU / multi-node: launch with
    ``torchrun --nproc_per_node N -m emgstream train RECIPE``.
    """
    import torch

    from ..modelfile import save_model_file
    from ..train import export_checkpoint, init_distributed, load_recipe, run_recipe

    t0 = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    try:
        config = load_recipe(recipe)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="RECIPE") from err
    config = config.scaled(steps_scale)
    env = init_distributed()
    checkpoint = run_recipe(config, env)
    if env.is_main:
        click.echo(f"checkpoint: {checkpoint}")
        if output is not None and checkpoint.is_dir():
            # a recipe without a head stage (unlabelled data) trains the encoders only
            click.echo(f"no model file: {recipe} has no head stage, so {checkpoint} holds "
                       f"encoders only ({output} not written)", err=True)
        elif output is not None:
            path = save_model_file(output, export_checkpoint(checkpoint))
            click.echo(f"model file: {path} ({path.stat().st_size / 1e6:.1f} MB)")
        click.echo(f"total wall time: {time.perf_counter() - t0:.1f} s")


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Model file to write (.emgm).")
def export(checkpoint: Path, output: Path) -> None:
    """Export CHECKPOINT (a recipe's model.pt) to a model file: ONNX graph, weights,
    preprocessing, class names, zero-shot bank, provenance and metrics."""
    from ..modelfile import ModelFileError, load_model_file, save_model_file
    from ..train import export_checkpoint

    try:
        path = save_model_file(output, export_checkpoint(checkpoint))
        model = load_model_file(path)
    except ModelFileError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"{model!r} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
