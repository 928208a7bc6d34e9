"""/metal and /compare end to end through the Bot API stand-in: two real result sets (outputs of real
EMPS micrographs, stored as a recognition job stores them), chosen by button; the numbers against
the stored tables and scipy; the refusal of a scaled set against an unscaled one; /stats' new lines."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats as sps

from storage.db import session_scope
from storage.files import FileStore
from storage.models import Job, Notice, Result, User
from tests.botapi.fixtures import buttons, user_row
from tests.botapi.harness import User as TgUser
from tests.botapi.harness import running_bot
from tests.test_compare import SET_A, SET_B, emps_labelme

ALICE = TgUser(2101, "Alice", "alice", "en")
BORIS = TgUser(2102, "Boris", "boris", "en")
NM = 0.5  # both scaled sets: nm/px


def _result_set(
    bs, store: FileStore, tmp: Path, user_id: int, image_ids, nm: float | None, params: dict | None = None
) -> tuple[int, np.ndarray]:
    """A succeeded recognition job whose Results hold real outputs of the EMPS images; (job id, D)."""
    from annotations.labelme import read_labelme
    from outputs.files import write_outputs

    d = []
    with session_scope(bs.database_url) as session:
        job = Job(user_id=user_id, kind="predict", state="succeeded", params=params or {})
        session.add(job)
        session.flush()
        for image_id in image_ids:
            ann = read_labelme(emps_labelme(tmp / f"in{job.id}", image_id))
            written = write_outputs(tmp / f"out{job.id}", image_id, ann.image, ann.instances, nm_per_px=nm)
            with open(written["csv"], newline="", encoding="utf-8") as fh:
                d += [float(r["d_nm" if nm else "d_px"]) for r in csv.DictReader(fh)]
            files = {role: store.put_file(path) for role, path in written.items()}
            summary = json.loads(Path(written["summary"]).read_text())
            session.add(Result(job_id=job.id, user_id=user_id, image_name=f"{image_id}.png", files=files,
                               summary=summary))
        return job.id, np.array(d)


def _press(api, call, data: str, contains: str | None = None, methods=("sendMessage", "editMessageText")):
    mark = api.mark()
    api.press(ALICE, call.result if isinstance(call.result, dict) else {}, data)
    return api.wait_reply(ALICE.id, mark, contains, methods=methods, timeout=20)


def _send(api, text: str, contains: str | None = None):
    mark = api.mark()
    api.send_text(ALICE, text)
    return api.wait_reply(ALICE.id, mark, contains, methods=("sendMessage",))


@pytest.mark.slow
def test_metal_and_compare_two_real_result_sets(bs, api, tmp_path: Path) -> None:
    store = FileStore(bs.files_dir)
    with running_bot(bs):
        assert "Usage: /metal Pt" in _send(api, "/metal").text  # also makes Alice's row
        assert "'Xx' is not in the table" in _send(api, "/metal Xx").text
        assert "Dispersion D = 1.12 nm / d_s" in _send(api, "/metal pt").text
        uid = user_row(bs.database_url, ALICE.id)["id"]
        assert user_row(bs.database_url, ALICE.id)["preferences"]["metal"] == "Pt"
        assert "/compare needs two" in _send(api, "/compare").text

        job_a, d_a = _result_set(bs, store, tmp_path, uid, SET_A, NM)
        job_b, d_b = _result_set(bs, store, tmp_path, uid, SET_B, NM)
        with session_scope(bs.database_url) as session:  # job A's results delivered: /metal in the caption
            session.add(Notice(user_id=uid, job_id=job_a, kind="predict_done", payload={}))
        overlay = api.wait_reply(ALICE.id, 0, "dispersion (Pt)", methods=("sendPhoto",), timeout=20)
        assert f"{SET_A[0]}.png: {len(d_a)} objects" in overlay.text
        stats = _send(api, "/stats", "Pooled over").text
        d = np.concatenate([d_a, d_b])
        assert f"surface-weighted mean d_s = {(d**3).sum() / (d**2).sum():.3g} nm" in stats
        assert f"{len(d)} objects: mean known to ±" in stats and "dispersion (Pt)" in stats
        job_c, _ = _result_set(bs, store, tmp_path, uid, SET_B[:1], None)  # no scale
        menu = _send(api, "/compare", "Choose the first")
        assert buttons(menu) == [f"cmp:{job_c}", f"cmp:{job_b}", f"cmp:{job_a}"]  # newest first
        second = _press(api, menu, f"cmp:{job_a}", "Now choose the second")
        assert buttons(second) == [f"cmp:{job_a}:{job_c}", f"cmp:{job_a}:{job_b}"]

        mark = api.mark()
        text = _press(api, second, f"cmp:{job_a}:{job_b}", "mean size", methods=("sendMessage",)).text
        photo = api.wait_reply(ALICE.id, mark, methods=("sendPhoto",), timeout=20)
        ratio = d_b.mean() / d_a.mean()
        assert f"mean size '#{job_b} {SET_B[0]}.png' / '#{job_a} {SET_A[0]}.png' = {ratio:.2f}" in text
        assert f"objects: {len(d_a)} | {len(d_b)}" in text
        assert f"number mean d_n, nm: {d_a.mean():.3g} | {d_b.mean():.3g}" in text
        sauter_a = (d_a**3).sum() / (d_a**2).sum()
        assert f"dispersion (Pt): {1.1227 / sauter_a:.3g}" in text
        ks = sps.ks_2samp(d_a, d_b).pvalue
        words = "the size distributions differ" if ks < 0.05 else "no difference of the size distributions"
        assert words in text and "(Mann-Whitney)" in text
        picture = Image.open(io.BytesIO(photo.files["photo"][1]))
        assert picture.format == "PNG" and picture.size[0] > 800
        table = api.wait_reply(ALICE.id, mark, methods=("sendDocument",), timeout=20).files["document"]
        rows = {r[0]: r for r in csv.reader(io.StringIO(table[1].decode()))}
        assert table[0] == "compare.csv"
        assert float(rows["mean ratio B/A"][1]) == pytest.approx(ratio, rel=1e-6)
        assert float(rows["Kolmogorov-Smirnov D, p"][2]) == pytest.approx(ks, rel=1e-6)

        refused = _press(api, second, f"cmp:{job_a}:{job_c}", "Cannot compare", methods=("sendMessage",))
        assert f"'#{job_c} {SET_B[0]}.png' (sizes in pixels, no scale)" in refused.text
        # Boris forging Alice's button reads nothing of hers
        fake = {"message_id": 1, "date": 0, "chat": {"id": BORIS.id, "type": "private"}}
        mark = api.mark()
        api.press(BORIS, fake, f"cmp:{job_a}:{job_b}")
        assert "expired" in api.wait_reply(BORIS.id, mark, "expired", methods=("sendMessage",)).text
        assert not api.calls_to(BORIS.id, ("sendPhoto",))

        stats = _send(api, "/stats", "Pooled over").text  # with the unscaled set: px, no dispersion
        assert "mean known to ±" in stats and "dispersion" not in stats
    with session_scope(bs.database_url) as session:
        assert session.get(User, uid).preferences["metal"] == "Pt"



@pytest.mark.slow
def test_a_results_caption_gives_the_metal_it_was_queued_with(bs, api, tmp_path: Path) -> None:
    """The result files carry the dispersion of the metal the job was queued with (PredictParams.metal);
    the caption delivered later says the same, even when /metal changed meanwhile."""
    from jobs.params import PredictParams

    store = FileStore(bs.files_dir)
    with running_bot(bs):
        assert "Dispersion D" in _send(api, "/metal Pd").text
        uid = user_row(bs.database_url, ALICE.id)["id"]
        queued = {"Pt": PredictParams(model_id=1, metal="Pt"), None: PredictParams(model_id=1)}
        jobs = {m: _result_set(bs, store, tmp_path, uid, SET_A[:1], NM, p.to_json())[0]
                for m, p in queued.items()}
        for metal, job in jobs.items():
            mark = api.mark()
            with session_scope(bs.database_url) as session:
                session.add(Notice(user_id=uid, job_id=job, kind="predict_done", payload={}))
            caption = api.wait_reply(ALICE.id, mark, methods=("sendPhoto",), timeout=20).text
            if metal is None:
                assert "dispersion" not in caption, caption  # queued without a metal: its files have none
            else:
                assert "dispersion (Pt)" in caption and "(Pd)" not in caption, caption


def test_a_result_caption_says_how_sure_its_mean_is(tmp_path: Path) -> None:
    from annotations.labelme import read_labelme
    from bot.captions import caption_for
    from measures.sizes import particles_needed, relative_precision
    from outputs.files import write_outputs

    ann = read_labelme(emps_labelme(tmp_path / "in", SET_B[0]))
    written = write_outputs(tmp_path / "out", "b", ann.image, ann.instances, nm_per_px=NM)
    summary = json.loads(Path(written["summary"]).read_text())
    n, mean, sd = summary["n_objects"], summary["mean_d_nm"], summary["std_d_nm"]
    caption = caption_for({"name": "b.png", "summary": summary}, "en")
    pct, need = 100 * relative_precision(n, mean, sd), particles_needed(mean, sd)
    assert pct < 5 and need < n  # these 42 particles are alike: their mean is known well enough
    assert f"{n} objects: mean known to ±{pct:.1f} %, within ±5 %" in caption
    assert "среднее известно с точностью" in caption_for({"name": "b.png", "summary": summary}, "ru")
    assert "dispersion" not in caption
    with_pt = caption_for({"name": "b.png", "summary": summary}, "en", "Pt")  # the user's /metal
    assert f"dispersion (Pt) {1.1227 / summary['sauter_d_nm']:.2f}" in with_pt
