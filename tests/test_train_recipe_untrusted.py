"""Recipes are untrusted: a TOML file from another lab may not make training write or read
outside the folder it runs in (or the recipe's own), nor crash the loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from emgstream.train import load_recipe


@pytest.fixture
def lab(tmp_path, monkeypatch) -> Path:
    """The run folder (working directory) with the received recipe in ``recipes/``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").mkdir()
    return tmp_path


def _refused(path: Path, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        load_recipe(path)
    assert "\n" not in str(info.value), str(info.value)


def _write(lab: Path, text: str) -> Path:
    path = lab / "recipes" / "received.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("key, value", [
    ("out", "/tmp/elsewhere/run"),  # absolute, outside
    ("out", "../../../../../../home/someone/.config"),  # climbing out
    ("root", "/etc/**/*.h5"),  # the fixed part of a glob is checked
    ("root", "~/data"),  # the user's home, as recording_files expands it
])
def test_paths_leaving_the_run_folder_refused(lab, key, value):
    data = f'[data]\nsource = "recordings"\nroot = "{value if key == "root" else "data"}"\n'
    path = _write(lab, f'out = "{value if key == "out" else "runs/x"}"\n{data}')
    name = "out" if key == "out" else "data.root"
    _refused(path, rf"received\.toml: {name} = '.*' leads to .*, outside the folder training "
                   rf"runs in \({lab}\) and the recipe's folder \({lab / 'recipes'}\)")


def test_paths_inside_the_run_folder_or_the_recipes_folder_accepted(lab):
    # the shipped recipes' shape: ../runs from a recipes folder inside the run folder
    recipe = load_recipe(_write(lab, 'out = "../runs/x"\n[data]\nsource = "recordings"\n'
                                     'root = "../data/**/*.hdf5"\n'))
    assert recipe.out_dir == lab / "runs" / "x"
    recipe = load_recipe(_write(lab, 'out = "run"\n'))
    assert recipe.out_dir == lab / "recipes" / "run"


def test_linked_data_is_the_users_choice(lab, tmp_path_factory):
    """A dataset kept elsewhere is used by linking it into the run folder."""
    elsewhere = tmp_path_factory.mktemp("datasets")
    (lab / "data").symlink_to(elsewhere)
    recipe = load_recipe(_write(lab, '[data]\nsource = "recordings"\nroot = "../data"\n'))
    assert recipe.data.root == "../data"


def test_oversized_recipe_refused(lab):
    path = _write(lab, "# padding\n" * 200_000)
    _refused(path, r"received\.toml is over 1048576 bytes")


def test_deeply_nested_recipe_refused(lab):
    path = _write(lab, "seed = " + "[" * 100_000)
    _refused(path, r"received\.toml nests arrays or tables deeper than the TOML parser follows")
