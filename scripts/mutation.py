"""Mutation testing (mutmut) of the scoring, search, resume and interpolation code; not part of CI.

    .venv/bin/pip install -e '.[mutation]'
    .venv/bin/python scripts/mutation.py --minutes 25 --children 2

It works on a copy of the tree (``--work``, default ``/tmp/wxembed-mutation``), never on the
checkout: the tree is copied, the shared test fixtures (``tiny_archive``, ``trained_model``,
``tiny_index``) are built once into the copy with the unmutated code and the copy's conftest
reuses them (mutmut runs every mutant in a fresh pytest session, and building them takes about
30 s), and mutmut mutates the functions in ``TARGETS`` only, running for each mutant only the
selected tests (``TESTS``) that execute the mutated function. It stops after ``--minutes`` and
prints one JSON object: the counts by outcome, the score (killed / (killed + survived)) and the
names of the surviving mutants (``cd WORK/main && mutmut show NAME`` shows one).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {
    "src/wxembed/evaluation/metrics.py": ["*"],
    "src/wxembed/evaluation/baselines.py": ["*"],
    "src/wxembed/evaluation/evaluate.py": ["x_held_out_split", "x__fit_baselines"],
    "src/wxembed/index/search.py": [
        "x_select_candidates",
        "x_search_set",
        "x__smallest",
        "xǁExactSearcherǁsearch",
        "xǁExactSearcherǁ_scores",
        "xǁExactSearcherǁ__init__",
    ],
    "src/wxembed/analysis/interpolate.py": ["*"],
    "src/wxembed/train.py": [
        "x_split_times",
        "x__check_resume",
        "xǁ_HistoryWriterǁ*",
        "x_train",
    ],
}
"""Files to mutate and, in each, the mutated functions (mutmut's names: ``x_f`` for a function,
``xǁClassǁmethod`` for a method; ``*`` for all)."""

TESTS = [
    "tests/test_metrics.py",
    "tests/test_baselines.py",
    "tests/test_evaluate.py",
    "tests/test_index.py",
    "tests/test_analysis.py",
    "tests/test_train.py",
    "-k",
    "not (clustering or round_trip_through or malformed or do_not_fit or report_is or grib2_file"
    " or killed_training or short_training or cosine_schedule or booby or corrupt"
    " or too_deep or rebuilds or every_num_steps or no_hours or another_grid_than)",
]
"""The tests mutmut may run (a mutant runs those of them that execute its function). The
excluded ones exercise other code (clustering, codecs, the report) or are slow and check
training itself; the kill-and-resume test is left out for its 20 s (the resume tests that
stay catch what it does: a restart from step 0, a lost or duplicated log)."""

FIXTURES = """

# ---- added by scripts/mutation.py: the shared fixtures, built once, reused by every mutant ----
_CACHE = Path(os.environ["WXEMBED_FIXTURE_CACHE"])


@pytest.fixture(scope="session")
def tiny_archive(tiny_grid) -> Path:  # noqa: F811
    return _CACHE / "a.zarr"


@pytest.fixture(scope="session")
def trained_model(tiny_archive) -> Path:  # noqa: F811
    return _CACHE / "model"


@pytest.fixture(scope="session")
def tiny_index(tiny_archive, trained_model) -> Path:  # noqa: F811
    return _CACHE / "i.duckdb"
"""

BUILD = """
import sys
from pathlib import Path
sys.path[:0] = [{src!r}, {tests!r}]
import conftest
from wxembed.grid import HRRR_CONUS
from wxembed.pipelines.embed import embed_archive
cache = Path({cache!r})
archive = conftest.make_archive(cache / "a.zarr", conftest.TINY_HOURS, seed=0,
                                grid=HRRR_CONUS.coarsen(conftest.TINY_COARSEN))
model = cache / "model"
conftest.train_model(archive, model)
with conftest.one_torch_thread():
    embed_archive(archive, model / "checkpoints" / "last.ckpt", cache / "i.duckdb", workers=1,
                  progress=False)
"""


def _copy_tree(work: Path) -> Path:
    """A fresh copy of src/, tests/ and pyproject.toml under ``work/main``; ``work/main/shared``
    points at the reference data beside the checkout (where the copied conftest looks)."""
    if work.exists():
        shutil.rmtree(work)
    main = work / "main"
    main.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("src", "tests"):
        shutil.copytree(ROOT / name, main / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", main / "pyproject.toml")
    if (ROOT.parent / "shared").is_dir():
        (main / "shared").symlink_to(ROOT.parent / "shared")
    return main


def _configure(main: Path) -> None:
    """mutmut's settings in the copy's pyproject.toml; the cached fixtures in its conftest."""
    text = (main / "pyproject.toml").read_text()
    text = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", text)
    text += "\n[tool.mutmut]\n" + "\n".join(
        [
            'source_paths = ["src"]',
            f"only_mutate = {json.dumps(list(TARGETS))}",
            f"pytest_add_cli_args_test_selection = {json.dumps(TESTS)}",
            'process_isolation = "forkserver"',
            "use_git_change_detection = false",
            "timeout_multiplier = 5.0",
        ]
    )
    (main / "pyproject.toml").write_text(text + "\n")
    conftest = main / "tests" / "conftest.py"
    conftest.write_text(conftest.read_text() + FIXTURES)


def _mutant_globs() -> list[str]:
    globs = []
    for path, functions in TARGETS.items():
        module = path.removeprefix("src/").removesuffix(".py").replace("/", ".")
        globs += [f"{module}.{f}" if f == "*" else f"{module}.{f}__mutmut_*" for f in functions]
    return globs


def _results(main: Path, env: dict) -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=main,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    by_status: dict[str, list[str]] = {}
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name and any(fnmatch.fnmatch(name, g) for g in _mutant_globs()):
            by_status.setdefault(status, []).append(name)
    return by_status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/wxembed-mutation"))
    parser.add_argument("--minutes", type=float, default=25.0, help="stop mutmut after this")
    parser.add_argument("--children", type=int, default=2, help="mutants run in parallel")
    parser.add_argument("--reuse", action="store_true", help="keep WORK: go on with its mutants")
    args = parser.parse_args()
    work = args.work.resolve()
    main_dir = work / "main"
    cache = work / "fixtures"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WXEMBED_FIXTURE_CACHE": str(cache),
    }  # no PYTHONPATH to mutants/src: set before mutmut makes it, Python caches it as absent
    t0 = time.monotonic()
    if not (args.reuse and main_dir.exists()):
        main_dir = _copy_tree(work)
        script = BUILD.format(
            src=str(main_dir / "src"), tests=str(main_dir / "tests"), cache=str(cache)
        )
        subprocess.run([sys.executable, "-c", script], env=env, check=True)
        _configure(main_dir)
    built = time.monotonic() - t0
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.children)]
    log = (work / "mutmut.log").open("a")
    proc = subprocess.Popen(
        cmd + _mutant_globs(), cwd=main_dir, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        proc.wait(timeout=max(60.0, args.minutes * 60 - built))
    except subprocess.TimeoutExpired:
        proc.terminate()  # mutmut stops its workers and saves what it has
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    by_status = _results(main_dir, env)
    counts = {status: len(names) for status, names in sorted(by_status.items())}
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    survived = counts.get("survived", 0)
    report = {
        "command": " ".join(["scripts/mutation.py", *sys.argv[1:]]),
        "minutes": round((time.monotonic() - t0) / 60, 1),
        "counts": counts,
        "score": round(killed / (killed + survived), 3) if killed + survived else None,
        "survived": sorted(by_status.get("survived", [])),
        "no_tests": sorted(by_status.get("no tests", [])),
        "log": str(work / "mutmut.log"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
