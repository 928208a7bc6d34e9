"""mypy keeps the job contracts ([tool.mypy] in pyproject.toml, run by tests/run.sh), and it can fail:
a job made with a misspelt param, a body reading one that does not exist, a notice with a field of
the wrong type are each reported, while the same snippet spelt right passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MYPY = Path(sys.executable).parent / "mypy"

GOOD = """
from jobs.context import JobContext, Outcome
from jobs.params import PredictParams, TrainParams
from storage.notices import JobFailedNotice

params = TrainParams(upload_ids=(1, 2), options={"arch": "tiny"})
failed = JobFailedNotice(job_id=1, kind="train", reason="no labels")

def body(ctx: JobContext[PredictParams]) -> Outcome:
    ids: tuple[int, ...] = ctx.params.upload_ids
    return Outcome(result={"n": len(ids)}, notice=failed)
"""


def mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(source)
    return subprocess.run([str(MYPY), "--config-file", str(REPO / "pyproject.toml"), str(snippet)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})


def test_the_contracts_type_check() -> None:
    proc = subprocess.run([str(MYPY)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout


def test_the_snippet_spelt_right_passes(tmp_path: Path) -> None:
    proc = mypy(tmp_path, GOOD)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("spelt_right, broken, expected", [
    ('TrainParams(upload_ids=(1, 2), options=', 'TrainParams(upload_idz=(1, 2), options=',
     'Unexpected keyword argument "upload_idz" for "TrainParams"'),
    ("ctx.params.upload_ids", "ctx.params.upload_idz", '"PredictParams" has no attribute "upload_idz"'),
    ('job_id=1, kind="train"', 'job_id="1", kind="train"', 'Argument "job_id" to "JobFailedNotice"'),
    ("JobContext[PredictParams]", "JobContext[dict]", 'Type argument "dict[Any, Any]" of "JobContext"'),
])
def test_a_contract_broken_in_the_snippet_is_reported(tmp_path: Path, spelt_right: str, broken: str,
                                                       expected: str) -> None:
    assert spelt_right in GOOD
    proc = mypy(tmp_path, GOOD.replace(spelt_right, broken))
    assert proc.returncode == 1, proc.stdout
    assert expected in proc.stdout, proc.stdout
