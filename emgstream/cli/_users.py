"""``emgstream users``: the personalized models kept for each user."""

from __future__ import annotations

import time

import click


@click.command()
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
              default=None, metavar="FILE",
              show_default="the shipped model",
              help="Mark the files that `run --user NAME --model FILE` picks up.")
def users(model_path: str | None) -> None:
    """List the personalized models kept per user (written by calibrate, run --adapt --user
    and the demo window), marking with * those adapted from MODEL, i.e. the ones that
    `emgstream run SOURCE --user NAME` starts from. Remove a file or a user's folder to
    forget it."""
    from ..pipeline import default_model_path, personal_model_path, users_folder

    folder = users_folder()
    files = sorted(folder.glob("*/*.emgm")) if folder.is_dir() else []
    if not files:
        click.echo(f"no personalized models in {folder}")
        return
    model_path = model_path or default_model_path()
    # the file name depends only on the source model: <stem>-<digest>.emgm
    current = None if model_path is None else personal_model_path("anyone", model_path).name
    click.echo(f"personalized models in {folder}"
               + (f" (* = adapted from {model_path})" if current else ""))
    for f in files:
        stat = f.stat()
        mark = "*" if f.name == current else " "
        saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(stat.st_mtime))
        click.echo(f"{mark} {f.parent.name:<16} {f.name:<40} {stat.st_size / 1e6:6.1f} MB  "
                   f"{saved}")
