"""``emgstream calibrate`` and ``emgstream eval``: source-free personalization (EMG-UP+, EMG-UP)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ._types import SECONDS

# the first is the default: emgstream.adapt.DEFAULT_METHOD (a test keeps them equal; importing
# it here would import torch for every `--help`)
_METHOD_CHOICES = ("emg-up+", "emg-up", "ssa", "ssp", "adabn", "shot-im", "pseudo-label")


def _adapt_options(f):
    """Options shared by both commands (EMG-UP hyper-parameters)."""
    options = [
        click.option("--lr", type=float, default=None, show_default="1e-4",
                     help="Learning rate of the adaptation (chosen on development users; "
                          "1e-7 leaves the model unchanged)."),
        click.option("--ssa-lr", type=float, default=None, show_default="1e-6",
                     help="Learning rate of the first stage, which aligns the user's feature "
                          "statistics (chosen on development users)."),
        click.option("--xi", type=float, default=None, show_default="0.8",
                     help="Confidence a window's prediction needs to be kept as a "
                          "pseudo-label."),
        click.option("--n-consecutive", type=int, default=None, show_default="1",
                     help="Keep a pseudo-label only in runs of this many consistent windows "
                          "(1: the confidence alone, chosen on development users)."),
        click.option("--renormalise/--no-renormalise", default=None, show_default="on",
                     help="Re-estimate a \"fixed\" input normalisation on the user's data "
                          "before adapting (models with per-window normalisation have no "
                          "statistics to re-estimate)."),
        click.option("--seed", type=int, default=0, show_default=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _adapt_config(lr, ssa_lr, xi, n_consecutive, renormalise, seed, base=None):
    from ..adapt import AdaptConfig

    base = base or AdaptConfig()
    changes = {"seed": seed}
    for key, value in (("lr", lr), ("ssa_lr", ssa_lr), ("xi", xi), ("n_consecutive", n_consecutive),
                       ("renormalise", renormalise)):
        if value is not None:
            changes[key] = value
    return base.replace(**changes)


@click.command()
@click.argument("source", required=False)
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False,
                                                       path_type=Path), default=None,
              show_default="the shipped model", help="The source model file.")
@click.option("--user", required=True, metavar="NAME",
              help="Whom the personalized model is for.")
@click.option("--duration", type=SECONDS, default=120.0,
              show_default=True, metavar="SECONDS", help="Seconds of EMG to record from SOURCE.")
@click.option("--from", "recording", type=click.Path(exists=True, dir_okay=False,
                                                     path_type=Path), default=None,
              help="Use this recording (HDF5) instead of recording from SOURCE.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              show_default="the user's, which run --user NAME and demo --user NAME pick up",
              help="Personalized model file to write.")
@click.option("--method", type=click.Choice(_METHOD_CHOICES), default=_METHOD_CHOICES[0],
              show_default=True,
              help="Adaptation method. emg-up+: EMG-UP's two stages with pseudo-labels for "
                   "every window, a class prior estimated from the person's data and the "
                   "source's classifier kept, the best deep method on new people; "
                   "emg-up: EMG-UP as published; the rest are its stages alone and the "
                   "baselines of `emgstream eval`.")
@_adapt_options
def calibrate(source, model_path, user, duration, recording, output, method, lr, ssa_lr, xi,
              n_consecutive, renormalise, seed):
    """Personalize a model to one user without labels (EMG-UP+ by default: see --method).

    Records DURATION seconds of the user's EMG from SOURCE (a source URI such as
    lsl://name=EMG, serial:///dev/ttyUSB0 or sim://?user=3), or reads --from REC.h5, filters it
    exactly as the live pipeline does, adapts the model and writes the personalized model
    file. Prints what can be measured without labels: pseudo-label acceptance, class balance
    and agreement with the source model.

    The file goes where `emgstream run SOURCE --user NAME` finds it next time (one per user
    and source model, under $EMGSTREAM_HOME or the user data folder), unless -o says
    otherwise.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from ..adapt import adapt
    from ..adapt.evaluate import _jsonable
    from ..adapt.guard import prediction_stats
    from ..adapt.methods import total_steps
    from ..modelfile import ModelFileError, load_model_file, save_model_file
    from ..nn import load_model
    from ..pipeline import default_model_path, personal_model_path
    from ..train import to_model_file

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if (source is None) == (recording is None):
        raise click.UsageError("give either SOURCE (to record) or --from REC.h5, not both")
    if model_path is None:
        model_path = default_model_path()
        if model_path is None:
            raise click.UsageError("no --model given and no shipped default model "
                                   "(models/default.emgm) was found")
    users_file = None  # the user's own file, when no -o overrides it
    if output is None:
        try:
            output = users_file = personal_model_path(user, model_path)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--user") from None
    try:
        mf = load_model_file(model_path)
        model = load_model(mf)
    except ModelFileError as err:
        raise click.BadParameter(str(err), param_hint="--model") from err
    prep = mf.preprocessing
    config = _adapt_config(lr, ssa_lr, xi, n_consecutive, renormalise, seed)
    # The collapse guard judges every epoch on up to guard_windows of the user's windows;
    # fewer hold one gesture or a stretch of rest, and it rolls back epoch after epoch.
    need = config.guard_windows
    need_s = (prep.window + (need - 1) * prep.hop) / prep.sample_rate
    needed = (f"calibration needs at least {need_s:.1f} s of EMG ({need} windows of "
              f"{prep.window / prep.sample_rate:g} s every {prep.hop / prep.sample_rate:g} s)")
    if recording is None:
        if duration < need_s:
            raise click.BadParameter(f"{duration:g} s is too little: {needed}",
                                     param_hint="--duration")
        filtered = _record_filtered(source, mf, duration)
    else:
        filtered = _filtered_recording(recording, mf)
    seconds = len(filtered) / prep.sample_rate
    ends = np.arange(prep.window, len(filtered) + 1, prep.hop)
    if len(ends) < need:
        raise click.ClickException(f"only {seconds:.2f} s of EMG ({len(ends)} windows); {needed}")
    windows = np.ascontiguousarray(
        np.lib.stride_tricks.sliding_window_view(filtered, prep.window, axis=0)[ends - prep.window])
    click.echo(f"{len(windows)} windows from {seconds:.1f} s of EMG "
               f"({prep.n_channels} ch @ {prep.sample_rate:g} Hz)")
    with tqdm(total=total_steps(method, len(windows), config), desc=f"calibrate ({method})",
              unit="step") as bar:
        adapted, report = adapt(model, windows, None, method, config, bar.update)
    # label-free diagnostics
    with torch.no_grad():
        x = torch.from_numpy(windows)
        p_source = torch.softmax(model(x)[0], dim=1)
        p_adapted = torch.softmax(adapted(x)[0], dim=1)
    balance_s, entropy_s = prediction_stats(p_source)
    balance_a, entropy_a = prediction_stats(p_adapted)
    agreement = float((p_source.argmax(1) == p_adapted.argmax(1)).float().mean())
    click.echo(f"pseudo-labels accepted: {_pct(report.accepted)} of windows (last epoch)")
    click.echo(f"class balance (entropy of mean prediction, 1 = uniform): source "
               f"{balance_s:.2f} -> adapted {balance_a:.2f}")
    click.echo(f"mean prediction entropy: source {entropy_s:.2f} -> adapted {entropy_a:.2f}")
    click.echo(f"agreement with the source model: {100 * agreement:.1f} %")
    click.echo(f"guard rollbacks: {report.rollbacks}; parameter change "
               f"{report.parameter_change:.2e}; {report.steps} steps in {report.seconds:.1f} s")
    counts = np.bincount(p_adapted.argmax(1).numpy(), minlength=mf.n_classes)
    click.echo("predicted classes: " + ", ".join(
        f"{name} {100 * c / len(windows):.0f}%" for name, c in zip(mf.class_names, counts) if c))
    provenance = {**mf.provenance, "personalized_for": user, "source_model": str(model_path),
                  "adaptation": {**report.to_dict(), "losses": report.losses,
                                 "config": {"lr": config.lr, "ssa_lr": config.ssa_lr,
                                            "xi": config.xi,
                                            "n_consecutive": config.n_consecutive,
                                            "renormalise": config.renormalise},
                                 "seconds_of_emg": seconds, "source_agreement": agreement}}
    provenance["adaptation"] = _jsonable(provenance["adaptation"])
    personal = to_model_file(adapted, prep, mf.class_names, bank=mf.bank,
                             provenance=provenance, metrics=mf.metrics)
    path = save_model_file(output, personal)
    click.echo(f"personalized model: {path} (total {time.perf_counter() - t0:.1f} s)")
    if users_file is not None:
        model_option = ("" if Path(model_path).resolve() == default_model_path()
                        else f" --model {model_path}")
        click.echo(f"it is used by: emgstream run SOURCE --user {user}{model_option}")


def _pct(x):
    return "n/a" if x != x else f"{100 * x:.1f} %"


def _filtered_recording(path, mf):
    from ..dsp import filter_offline
    from ..io import RecordingError, read_recording
    from ..modelfile import ModelFileError

    try:
        rec = read_recording(path)
        mf.check_stream(rec.n_channels, rec.sample_rate)
    except (RecordingError, ModelFileError) as err:
        raise click.BadParameter(str(err), param_hint="--from") from err
    return filter_offline(rec.emg, rec.sample_rate, mf.preprocessing)


def _record_filtered(uri, mf, duration):
    """Record ``duration`` s from a source, filtered chunk by chunk by the live chain."""
    import numpy as np
    from tqdm.auto import tqdm

    from ..dsp import make_filter
    from ..modelfile import ModelFileError
    from ..sources import open_source

    prep = mf.preprocessing
    target = int(round(duration * prep.sample_rate))
    try:
        src = open_source(uri)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="SOURCE") from err
    filt = make_filter(prep)
    parts, got = [], 0
    with src, tqdm(total=round(duration), desc="recording", unit="s") as bar:
        try:
            mf.check_stream(src.info.n_channels, src.info.sample_rate)
        except ModelFileError as err:
            raise click.ClickException(str(err)) from err
        deadline = time.monotonic() + duration + 10.0
        while got < target:
            if time.monotonic() > deadline or getattr(src, "finished", False):
                click.echo(f"source delivered {got / prep.sample_rate:.1f} s of "
                           f"{duration:g} s; using what came", err=True)
                break
            samples, _ = src.read(0.1)
            samples = samples[:target - got]
            if len(samples):
                parts.append(filt.process(samples))
                before = int(got / prep.sample_rate)
                got += len(samples)
                bar.update(int(got / prep.sample_rate) - before)
            dropped = sum(span.count for span in src.drain_drops())
            if dropped:
                click.echo(f"warning: the source dropped {dropped} samples", err=True)
    if not parts:
        raise click.ClickException(f"no samples came from {uri}")
    return np.concatenate(parts)


def _user_list(text):
    """Users as people type them: ``1-11``, ``12-20,22``, ``Participant3``, ``synth004``.

    A range ``A-B`` of whole numbers expands to A..B inclusive; anything else is one user.
    """
    if not text:
        return None
    out = []
    for item in (u.strip() for u in text.split(",")):
        first, dash, last = item.partition("-")
        if dash and first.strip().isdigit() and last.strip().isdigit():
            a, b = int(first), int(last)
            if a > b:
                raise click.BadParameter(f"range {item!r} runs backwards; write {b}-{a}")
            out.extend(str(i) for i in range(a, b + 1))
        elif item:
            out.append(item)
    return out


@click.command("eval")
@click.option("--dataset", type=click.Choice(["synth", "3dc", "hdf5"]), required=True,
              help="synth: generated users (or `emgstream synth` files with --root); 3dc: the "
                   "3DC folders; hdf5: labelled recordings, two sessions per user.")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Dataset folder.")
@click.option("--users", default=None,
              help="Users for leave-one-user-out, comma-separated, ranges allowed (3DC: "
                   "1-11 or Participant1,...; synth: indices such as 12-20,22).")
@click.option("--folds", type=int, default=None,
              help="With --users: k-fold instead of leave-one-out (k source models; each "
                   "user is still scored by a model that never saw them).")
@click.option("--train-users", default=None,
              help="Train the source model once on these (ranges allowed, e.g. 1-11)...")
@click.option("--test-users", default=None, help="...and adapt to each of these.")
@click.option("--rows", default=None,
              help="Comma-separated subset of: upper-bound, source-only, lda, lda-zscore, "
                   "lda-kmeans, adabn, ssa, ssp, emg-up, shot-im, pseudo-label, emg-up+.",
              show_default="all")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              default=Path("eval-results"), show_default=True,
              help="Folder for results.json, per_user.csv and results.md.")
@click.option("--source-epochs", type=int, default=None,
              show_default="6", help="Supervised epochs of each source model.")
@click.option("--mae-epochs", type=int, default=None, show_default="2",
              help="Epochs of masked-autoencoder pre-training.")
@click.option("--train-stride", type=float, default=None, show_default="0.1",
              help="Seconds between source-training windows (larger is faster).")
@click.option("--epochs-scale", type=float, default=1.0, show_default=True,
              help="Multiply the adaptation epochs (SSA 5, SSP 10) by this.")
@click.option("--synth-duration", type=float, default=120.0, show_default=True,
              help="Seconds per generated synthetic session.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, metavar="FILE",
              help="Adapt this trained model file (e.g. the shipped one) to each --test-users "
                   "user instead of training a source model.")
@click.option("--features", type=click.Choice(["log_power", "raw"]), default="log_power",
              show_default=True,
              help="Encoder token inputs: per-channel log power of each patch, or its raw "
                   "samples (CPEP's tokens).")
@click.option("--threads", type=int, default=1, show_default=True, help="Torch CPU threads.")
@_adapt_options
def eval_(dataset, root, users, folds, train_users, test_users, rows, output, source_epochs,
          mae_epochs, train_stride, epochs_scale, synth_duration, model_path, features,
          threads, lr, ssa_lr, xi, n_consecutive, renormalise, seed):
    """Cross-user evaluation of source-free adaptation.

    Each test user's first block is used unlabelled for adaptation, the second only for
    scoring. --users runs leave-one-user-out (a source model per held-out user, trained on
    the others); --train-users/--test-users trains one source model and adapts it to each test
    user; --model FILE --test-users adapts a trained model file to each test user. Prints and writes the summary table (mean, std, worst user, per-user change against
    source-only) and the per-user accuracies.
    """
    import dataclasses

    import torch

    from ..adapt.evaluate import (ROWS, EvalConfig, evaluate, load_users, markdown_table,
                                  per_user_table, write_results)

    torch.set_num_threads(threads)
    if model_path is not None:
        if users is not None or test_users is None:
            raise click.UsageError("--model adapts a trained model: give --test-users (and "
                                   "--train-users for the classical rows)")
    elif (users is None) == (train_users is None and test_users is None):
        raise click.UsageError("give --users (leave-one-out) or --train-users and --test-users")
    elif users is None and (train_users is None or test_users is None):
        raise click.UsageError("--train-users and --test-users go together")
    if dataset in ("3dc", "hdf5") and root is None:
        raise click.UsageError(f"--dataset {dataset} needs --root")
    listed = (_user_list(users) if users
              else (_user_list(train_users) or []) + _user_list(test_users))
    t0 = time.perf_counter()
    try:
        data, prep, classes = load_users(dataset, root, listed, synth_duration_s=synth_duration,
                                         seed=seed)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    names = list(data)

    def resolve(items):
        out = []
        for u in items:
            match = [n for n in names if n == u or n == f"Participant{u}"
                     or (dataset == "synth" and u.isdigit() and n == f"synth{int(u):03d}")]
            if not match:
                raise click.BadParameter(f"user {u!r} not in the dataset ({names})")
            out.append(match[0])
        return out

    source = None
    if model_path is not None:
        from ..modelfile import ModelFileError, load_model_file
        from ..nn import load_model

        try:
            model_file = load_model_file(model_path)
        except ModelFileError as err:
            raise click.ClickException(str(err)) from err
        # every label of the users must mean the same class to the model
        if list(classes) != list(model_file.class_names[:len(classes)]):
            raise click.ClickException(
                f"{model_path} classifies {model_file.class_names}; the {dataset} users' "
                f"labels are {classes}")
        prep, classes, source = model_file.preprocessing, model_file.class_names, \
            load_model(model_file).eval()
        train, test, loo = resolve(_user_list(train_users) or []), resolve(_user_list(test_users)), False
    elif users:
        train, test, loo = resolve(_user_list(users)), resolve(_user_list(users)), True
    else:
        train, test, loo = resolve(_user_list(train_users)), resolve(_user_list(test_users)), False
    base = EvalConfig()
    adapt_cfg = _adapt_config(lr, ssa_lr, xi, n_consecutive, renormalise, seed, base.adapt)
    adapt_cfg = adapt_cfg.replace(ssa_epochs=max(1, round(adapt_cfg.ssa_epochs * epochs_scale)),
                                  ssp_epochs=max(1, round(adapt_cfg.ssp_epochs * epochs_scale)))
    changes = {"adapt": adapt_cfg, "seed": seed, "features": features}
    if source_epochs is not None:
        changes["supervised_epochs"] = source_epochs
    if mae_epochs is not None:
        changes["mae_epochs"] = mae_epochs
    if train_stride is not None:
        changes["train_stride_s"] = train_stride
    if rows:
        chosen = tuple(_user_list(rows))
        bad = [r for r in chosen if r not in ROWS]
        if bad:
            raise click.BadParameter(f"unknown rows {bad}; known: {', '.join(ROWS)}",
                                     param_hint="--rows")
        changes["rows"] = chosen
    config = dataclasses.replace(base, **changes)
    click.echo(f"{dataset}: {len(data)} users loaded in {time.perf_counter() - t0:.0f} s; "
               f"{'leave-one-out over ' + str(test) if loo else f'train {train or model_path}, test {test}'}")
    if folds is not None and not loo:
        raise click.UsageError("--folds goes with --users")
    try:
        result = evaluate(data, train, test, prep, classes, config, leave_one_out=loo,
                          folds=folds, source=source)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    paths = write_results(result, output, classes)
    click.echo(markdown_table(result))
    click.echo("")
    click.echo(per_user_table(result))
    click.echo(f"\nwall time {result['wall_seconds']:.0f} s; wrote {', '.join(map(str, paths.values()))}")
