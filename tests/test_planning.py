"""Output planning: every input its own output, all inside -o, the same on a rerun.

Cases B1-B3 and U13 of docs/RELIABILITY.md (second round).

The unit tests pin the cases the second round found; the property test builds random trees of names,
extensions, folders and suffixes on disk and checks the guarantees of bsgd_cli/planning.py over them.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from bsgd_cli.batch.planning import Naming, check_suffix, claims, collect_jobs, name_key, plan_outputs
from bsgd_cli.cli import EXIT_USAGE, app
from bsgd_cli.errors import ConfigError

runner = CliRunner()


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def _plan(found: list[tuple[Path, Path]], naming: Naming, out: Path = Path("out")) -> dict[str, str]:
    return {str(item.source): item.target.relative_to(out).as_posix() for item in plan_outputs(found, out, naming)}


def test_same_name_in_two_folders_gets_two_outputs() -> None:  # B1
    found = [(Path("d1/x.png"), Path("x.png")), (Path("d2/x.png"), Path("x.png"))]
    assert _plan(found, Naming()) == {"d1/x.png": "x_png.png", "d2/x.png": "x_png_2.png"}
    # The command line's order does not decide who gets which name.
    assert _plan(found[::-1], Naming()) == {"d1/x.png": "x_png.png", "d2/x.png": "x_png_2.png"}


def test_renamed_clash_never_lands_on_another_inputs_output() -> None:  # B2
    found = [(Path(f"e/{name}"), Path(name)) for name in ("a.jpg", "a.png", "a_png.png")]
    plan = _plan(found, Naming(ext="png"))
    assert plan["e/a_png.png"] == "a_png.png"  # the plain name stays with the input that has it
    assert len(set(plan.values())) == 3
    assert plan == {"e/a.jpg": "a_jpg.png", "e/a.png": "a_png_2.png", "e/a_png.png": "a_png.png"}


def test_case_only_difference_clashes_as_on_a_case_insensitive_disk() -> None:
    found = [(Path("in/A.png"), Path("A.png")), (Path("in/a.png"), Path("a.png"))]
    plan = _plan(found, Naming())
    assert len({name_key(name) for name in plan.values()}) == 2, plan


def test_compare_views_and_dng_fallbacks_are_claimed_too() -> None:
    # a.png's compare view would be a_compare.png, the output of the input a_compare.png
    found = [(Path("in/a.png"), Path("a.png")), (Path("in/a_compare.png"), Path("a_compare.png"))]
    plan = _plan(found, Naming(compare=True))
    every = [name_key(p) for src, target in plan.items()
             for p in claims(Path("out") / target, Path(src), Naming(compare=True))]
    assert len(every) == len(set(every)) == 4, plan
    # With --raw-output dng a RAW file without a Bayer mosaic is written as TIFF: that name is kept free.
    found = [(Path("in/a.nef"), Path("a.nef")), (Path("in/a.tif"), Path("a.tif"))]
    plan = _plan(found, Naming(raw_output="dng"))
    assert Path(plan["in/a.nef"]).with_suffix(".tif").as_posix() != plan["in/a.tif"], plan


@pytest.mark.parametrize("suffix", ["/../../escaped", "a/b", "..", "_x..y", "a\\b", "nl\nx", "\x00", "_Compare"])
def test_suffixes_that_could_leave_the_output_folder_are_refused(suffix: str) -> None:  # B3
    with pytest.raises(ConfigError):
        check_suffix(suffix)


def test_suffix_escape_is_refused_by_the_cli(tmp_path: Path) -> None:  # B3, end to end
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    result = runner.invoke(app, ["denoise", str(tmp_path / "a.png"), "-o", str(tmp_path / "o" / "x"),
                                 "--suffix", "/../../escaped", "--mode", "bsn"])
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*escaped*")) and not (tmp_path / "o").exists()


def test_in_place_rerun_leaves_earlier_outputs_alone_and_says_so(tmp_path: Path) -> None:  # U13
    folder = tmp_path / "photos"
    for name in ("a.png", "b_dn.png", "c.jpg"):
        _touch(folder / name)
    naming = Naming(suffix="_dn")
    first = collect_jobs([folder], folder, naming, recursive=False, in_place=True)
    planned = {job.source.name: job.target.name for job in first.jobs}
    # b_dn.png has no a "b.png" beside it: it is an input of its own, not an earlier output.
    assert planned == {"a.png": "a_dn.png", "b_dn.png": "b_dn_dn.png", "c.jpg": "c_dn.jpg"}
    assert first.notes == []
    for job in first.jobs:
        _touch(job.target)
    second = collect_jobs([folder], folder, naming, recursive=False, in_place=True)
    assert {job.source.name: job.target.name for job in second.jobs} == planned
    [note] = second.notes
    assert note.startswith("3 file(s) are outputs of the other inputs") and "a_dn.png" in note


def test_in_place_needs_a_suffix(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg")
    with pytest.raises(ConfigError, match="--in-place with a --suffix"):
        collect_jobs([tmp_path], tmp_path, Naming(ext="png"), recursive=False, in_place=True)


def test_same_name_in_two_folders_end_to_end(tmp_path: Path, tiny_model_file: Path) -> None:  # B1 through the CLI
    rng = np.random.default_rng(0)
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
        Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(tmp_path / folder / "x.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["denoise", str(tmp_path / "d1"), str(tmp_path / "d2"), "-o", str(out),
                                 "--model", str(tiny_model_file), "--mode", "bsn", "--json"])
    assert result.exit_code == 0, result.output
    import json

    files = json.loads(result.stdout)["files"]
    outputs = {Path(f["input"]).parent.name: Path(f["output"]).name for f in files}
    assert outputs == {"d1": "x_png.png", "d2": "x_png_2.png"}
    assert sorted(p.name for p in out.iterdir()) == ["x_png.png", "x_png_2.png"]
    with Image.open(tmp_path / "d1" / "x.png") as a, Image.open(tmp_path / "d2" / "x.png") as b:
        assert not np.array_equal(np.asarray(a), np.asarray(b))  # two different results survive
    assert all("another input also makes x.png" in " ".join(f["warnings"]) for f in files)


# ------------------------------------------------------------------------------------ property test

STEMS = ["x", "X", "x_png", "x_jpg", "x_png_2", "x_dn", "x_dn_dn", "x_compare", "é", "e\u0301", "a b", "ß", "SS"]
EXTENSIONS = [".png", ".PNG", ".jpg", ".jpeg", ".tif", ".dng", ".webp"]
FOLDERS = ["", "sub", "SUB", "sub/deeper"]
SUFFIXES = ["", "_dn", "-x", "_png", "_2"]


@st.composite
def trees(draw):
    files = draw(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(FOLDERS), st.sampled_from(STEMS),
                                    st.sampled_from(EXTENSIONS)), min_size=1, max_size=14, unique=True))
    naming = Naming(ext=draw(st.sampled_from(["keep", "png", "tif", "jpg"])),
                    suffix=draw(st.sampled_from(SUFFIXES)),
                    raw_output=draw(st.sampled_from(["tiff", "dng"])), compare=draw(st.booleans()))
    return files, naming, draw(st.randoms(use_true_random=False))


def _build(root: Path, files) -> tuple[list[Path], int]:
    roots = [root / f"in{index}" for index in range(3)]
    for folder in roots:
        folder.mkdir()
    made = set()
    for which, folder, stem, ext in files:
        path = roots[which] / folder / f"{stem}{ext}"
        _touch(path)
        made.add(path)
    return roots, len(made)


def _mapping(jobs) -> dict[Path, Path]:
    return {job.source: job.target for job in jobs}


# Each example builds a small tree on disk (milliseconds); no shrinking database is kept.
@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees())
def test_every_input_gets_its_own_output_inside_out_and_reruns_plan_the_same(tmp_path_factory, tree) -> None:
    files, naming, shuffle = tree
    root = tmp_path_factory.mktemp("tree")
    roots, count = _build(root, files)
    out = root / "out"
    first = collect_jobs(roots, out, naming, recursive=True, in_place=False)
    assert len(first.jobs) == count  # every input is planned
    keys = [name_key(path) for job in first.jobs for path in claims(job.target, job.source, naming)]
    assert len(keys) == len(set(keys))  # no two inputs share any file they may write
    for job in first.jobs:
        assert os.path.commonpath([out, job.target]) == str(out) and job.target != out
        assert len(os.fsencode(job.target.name)) <= 255
    # A rerun, with the outputs of the first run on disk and the folders in another order, plans the same.
    for job in first.jobs:
        _touch(job.target)
    order = list(roots)
    shuffle.shuffle(order)
    again = collect_jobs(order, out, naming, recursive=True, in_place=False)
    assert _mapping(again.jobs) == _mapping(first.jobs)


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees())
def test_in_place_rerun_plans_the_same_and_takes_no_output_for_an_input(tmp_path_factory, tree) -> None:
    files, naming, _shuffle = tree
    if not naming.suffix:
        naming = Naming(ext=naming.ext, suffix="_dn", raw_output=naming.raw_output, compare=naming.compare)
    root = tmp_path_factory.mktemp("tree")
    roots, _count = _build(root, [(0, *rest) for _which, *rest in files])
    folder = roots[0]
    first = collect_jobs([folder], folder, naming, recursive=True, in_place=True)
    sources = {name_key(job.source) for job in first.jobs}
    for job in first.jobs:
        assert all(name_key(path) not in sources for path in claims(job.target, job.source, naming))
    for job in first.jobs:  # what the run writes: each output, and its compare view with --compare
        for path in claims(job.target, job.source, naming)[: 2 if naming.compare else 1]:
            _touch(path)
    again = collect_jobs([folder], folder, naming, recursive=True, in_place=True)
    assert _mapping(again.jobs) == _mapping(first.jobs)


def test_random_trees_are_not_all_trivial() -> None:
    """The strategy does make clashes: one seeded draw of its building blocks renames something."""
    rng = random.Random(0)
    found = [(Path(f"in{rng.randrange(3)}") / name, Path(name)) for name in
             (f"{rng.choice(STEMS)}{rng.choice(EXTENSIONS)}" for _ in range(40))]
    found = list(dict.fromkeys(found))
    assert any(item.notes for item in plan_outputs(found, Path("out"), Naming(ext="png")))
