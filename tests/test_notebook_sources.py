"""The committed notebooks are exactly what ``scripts/make_notebooks.py`` writes (the script is
their source: an edit made in only one of the two is caught), with stable cell ids."""
import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("make_notebooks", ROOT / "scripts" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines the cells; writes nothing (``__main__`` only)
    return module


def test_committed_notebooks_are_what_the_script_writes():
    script = _script()
    assert script.NOTEBOOKS
    for path, (cells, name) in script.NOTEBOOKS.items():
        assert (ROOT / path).read_text(encoding="utf-8") == nbformat.writes(script.build(cells, name)) + "\n", path


def test_cell_ids_are_the_same_on_every_build():
    script = _script()
    for cells, name in script.NOTEBOOKS.values():
        ids = [c.id for c in script.build(cells, name).cells]
        assert ids == [c.id for c in script.build(cells, name).cells] == [f"{name}-{i}" for i in range(len(cells))]
