"""Recipes on HDF5 recordings (data.source = "recordings"): user splits, lazy reading by
DataLoader workers, every stage through to a model file; the emg2pose layout feeds it too."""

from __future__ import annotations

import fnmatch
import os
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import pytest
import torch

from emgstream.modelfile import ModelFileError, load_model_file
from emgstream.synth import GESTURES, UNSEEN_GESTURES, SynthConfig, user_name, write_dataset
from emgstream.train import RecordingWindows, export_checkpoint, load_recipe, run_recipe
from emgstream.train._pipeline import load_splits

torch.set_num_threads(1)

MODEL = """
[model]
emg_patch = 10
pose_patch = 25
d_model = 16
n_layers = 2
n_heads = 2
qformer_queries = 2
qformer_layers = 2
n_communities = 4
bank_per_class = 5
"""

STAGE = "steps = {steps}\nbatch_size = 8\nnum_workers = {workers}\n"


def _recipe(tmp_path, data: str, stages=("mae-emg", "mae-pose", "align-cpep", "head"),
            workers=2, steps=3):
    text = f'name = "rec"\nout = "run"\n[data]\n{data}\n{MODEL}'
    for stage in stages:
        text += f"[stages.{stage}]\n" + STAGE.format(steps=20 if stage == "head" else steps,
                                                     workers=workers)
    path = tmp_path / "rec.toml"
    path.write_text(text)
    return load_recipe(path)


@pytest.fixture(autouse=True)
def _run_folder(tmp_path_factory, monkeypatch):
    """Train from the folder that holds every test's files: a recipe may only name paths
    inside the working directory or its own folder, and these recipes point at the shared
    recordings (and at their own run folder)."""
    monkeypatch.chdir(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Four synthetic users, one session each, with unseen-gesture files: 4 ch at 500 Hz."""
    root = tmp_path_factory.mktemp("recordings")
    write_dataset(root / "synth", 4, 1, 10.0, SynthConfig(n_channels=4, sample_rate=500.0),
                  seed=0, unseen_duration_s=4.0)
    return root


SYNTH_DATA = f"""
source = "recordings"
root = "{{root}}"
train = ["synth00[01]"]
probe = ["synth002"]
test = ["synth003"]
unseen = {list(UNSEEN_GESTURES)!r}
n_channels = 4
sample_rate = 500.0
window = 100
hop = 10
stride = 20
""".replace("'", '"')


def test_recordings_are_split_by_user_and_unseen_gestures_stay_out(tmp_path, recordings):
    recipe = _recipe(tmp_path, SYNTH_DATA.format(root=recordings / "synth"))
    splits = load_splits(recipe)
    assert isinstance(splits.train, RecordingWindows)
    assert sorted(set(splits.train.users.tolist())) == ["synth000", "synth001"]
    assert set(splits.probe.users.tolist()) == {"synth002"}
    assert set(splits.test.users.tolist()) == {"synth003"}
    assert splits.seen == list(GESTURES) and splits.unseen == list(UNSEEN_GESTURES)
    # training windows never touch an unseen gesture; their labels index the seen ones
    assert splits.train.class_names == list(GESTURES)
    assert int(splits.train.labels.max()) < len(GESTURES)
    # the test user's unseen file is there, and relabelling picks its gestures
    unseen_test = splits.test.relabel(list(UNSEEN_GESTURES))
    assert len(unseen_test) > 0 and set(unseen_test.labels.tolist()) <= set(range(5))
    emg, pose, labels = splits.train.rotated(1).__getitems__([0, 1, 2])
    assert emg.shape == (3, 4, 100) and pose.shape == (3, 20, 100) and labels.shape == (3,)
    assert emg.dtype == torch.float32 and pose.dtype == torch.float32
    # a root relative to the recipe file, and a glob, find the same files
    rel = _recipe(tmp_path, SYNTH_DATA.format(
        root=os.path.join(os.path.relpath(recordings, tmp_path), "synth", "*.hdf5")))
    assert load_splits(rel).train.files == splits.train.files


def test_recordings_dataset_pickles_without_samples_or_handles(tmp_path, recordings):
    recipe = _recipe(tmp_path, SYNTH_DATA.format(root=recordings / "synth"))
    train = load_splits(recipe).train
    before = len(pickle.dumps(train))
    train.__getitems__(list(range(len(train))))  # reads and filters every file here
    blob = pickle.dumps(train)
    assert len(blob) == before  # what was read stays behind: workers read for themselves
    copy = pickle.loads(blob)
    a, b = copy.__getitems__([5, 7]), train.__getitems__([5, 7])
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])


def test_recordings_recipe_trains_every_stage_with_workers_and_exports(tmp_path, recordings):
    recipe = _recipe(tmp_path, SYNTH_DATA.format(root=recordings / "synth"))
    splits = load_splits(recipe)
    ckpt = run_recipe(recipe, splits=splits)
    for stage in ("mae-emg", "mae-pose", "align-cpep"):
        rows = (recipe.out_dir / stage / "metrics.csv").read_text().splitlines()
        assert rows[-1].startswith("3,")  # three steps, logged at the last
    # the training stages read the recordings in their 2 workers, never in this process
    assert splits.train.dataset._cache == {}
    mf = load_model_file(_save(export_checkpoint(ckpt), tmp_path / "rec.emgm"))
    assert mf.class_names == list(GESTURES) and mf.preprocessing.n_channels == 4
    assert mf.metrics["test_users"] == ["synth003"]
    assert mf.provenance["recipe"]["data"]["source"] == "recordings"
    assert set(mf.bank["labels"].tolist()) <= set(range(len(GESTURES)))


def _save(model_file, path):
    from emgstream.modelfile import save_model_file

    return save_model_file(path, model_file)


def test_recordings_recipe_errors_name_the_problem(tmp_path, recordings):
    with pytest.raises(ValueError, match="needs data.root"):
        _recipe(tmp_path, 'source = "recordings"')
    with pytest.raises(ValueError, match="must be 'synth' or 'recordings'"):
        _recipe(tmp_path, 'source = "emg2pose"')
    with pytest.raises(ValueError, match="holds no .hdf5"):
        load_splits(_recipe(tmp_path, SYNTH_DATA.format(root=tmp_path / "nothing")))
    no_test = SYNTH_DATA.format(root=recordings / "synth").replace('["synth003"]', '["x"]')
    with pytest.raises(ValueError, match="no recording .* matches data.test"):
        load_splits(_recipe(tmp_path, no_test))
    wrong_rate = SYNTH_DATA.format(root=recordings / "synth").replace("500.0", "2000.0")
    with pytest.raises(ValueError, match="500 Hz"):
        load_splits(_recipe(tmp_path, wrong_rate))


def test_full_recipe_reads_recordings_split_as_documented(monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[1])  # as documented: train from the checkout
    recipe = load_recipe(Path(__file__).parents[1] / "models/recipes/full.toml")
    d = recipe.data
    assert d.source == "recordings" and d.unseen == list(UNSEEN_GESTURES)
    assert (recipe.model.d_model, recipe.model.n_layers, recipe.model.decoder_layers) == (256, 4, 2)
    users = [user_name(i) for i in range(193)]  # what `emgstream synth --users 193` writes

    def split(user):
        return next(s for s in ("test", "probe", "train")
                    if any(fnmatch.fnmatchcase(user, p) for p in getattr(d, s)))

    counts = Counter(map(split, users))
    assert counts == {"train": 158, "probe": 15, "test": 20}
    assert all(split(u) == "test" for u in users[-20:])


def test_emg2pose_file_feeds_an_encoder_recipe(tmp_path, shared_dir):
    """The emg2pose dataset's own layout (no gesture labels): the encoders pre-train on it;
    a head stage is refused with a clear error."""
    path = tmp_path / "emg2pose.hdf5"  # inside the run folder, as a recipe needs it
    path.write_bytes((shared_dir / "data/emg2pose/test_data.hdf5").read_bytes())
    data = f"""
source = "recordings"
root = "{path}"
n_channels = 16
sample_rate = 2000.0
window = 50
hop = 5
stride = 5
"""
    recipe = _recipe(tmp_path, data, stages=("mae-emg", "mae-pose", "align-cpep"), steps=2)
    splits = load_splits(recipe)
    assert splits.seen == [] and splits.test is None and len(splits.train) == 11
    out = run_recipe(recipe, splits=splits)
    assert out == recipe.out_dir
    with pytest.raises(ModelFileError, match="trains encoders only"):
        export_checkpoint(out)
    for stage in ("mae-emg", "mae-pose", "align-cpep"):
        state = torch.load(out / stage / "final.pt", weights_only=True)
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    # the CLI says why it writes no model file instead of failing (finished stages are skipped)
    from click.testing import CliRunner

    from emgstream.cli import main

    model = tmp_path / "encoders.emgm"
    result = CliRunner().invoke(main, ["train", str(recipe.path), "-o", str(model)])
    assert result.exit_code == 0, result.output
    assert "no head stage" in result.output and not model.exists()
    # two users (copies of the file under other names) so that a head recipe has test users
    for user in ("a", "b"):
        copy = tmp_path / "two" / f"{user}.hdf5"
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(path.read_bytes())
        with h5py.File(copy, "r+") as f:
            f["emg2pose"].attrs["user"] = user
    two = data.replace(str(path), str(tmp_path / "two")) + 'test = ["b"]\n'
    with pytest.raises(ValueError, match="carry no gesture labels"):
        load_splits(_recipe(tmp_path, two, stages=("mae-emg", "head")))


@pytest.mark.slow
def test_recordings_recipe_under_torchrun_two_cpu_processes(tmp_path, recordings):
    """The GPU launch line, on two CPU processes (gloo): each rank's DistributedSampler
    shard read by its own DataLoader worker, rank 0 writes the model file."""
    recipe = _recipe(tmp_path, SYNTH_DATA.format(root=recordings / "synth"), workers=1,
                     steps=2)
    out = tmp_path / "ddp.emgm"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                           "2", "--standalone", "-m", "emgstream", "train", str(recipe.path),
                           "-o", str(out), "--threads", "1"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mf = load_model_file(out)
    assert mf.provenance["world_size"] == 2
    assert mf.provenance["recipe"]["data"]["source"] == "recordings"
    rows = (recipe.out_dir / "align-cpep" / "metrics.csv").read_text().splitlines()
    assert rows[-1].startswith("2,")
