"""Microscope files through the bot, against the stand-in with the real Application: a DM4 and a SEM
TIFF with an info bar sent as documents are summarised with their scale and its source and the bar
left out; an unsure scale bar reading is asked about ("Use" / "No scale"), answered once; a result
brings the lab-tool files and the set's COCO JSON and workbook exactly once; /help names it all."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.files_in import kind_of
from imaging.images import read_image
from imaging.infobar import ASK_BELOW
from jobs.params import PredictParams
from outputs.files import write_outputs
from outputs.lab_formats import SetEntry, write_result_set
from storage.db import session_scope
from storage.files import FileStore
from storage.models import Job, Notice, Result, TrainedModel, Upload, User
from tests.botapi.fixtures import buttons, keyboard, rows, user_row
from tests.botapi.harness import User as TgUser
from tests.botapi.harness import running_bot
from tests.fake_detector import disc_image
from tests.microscope_files import dm_bytes, gwy_bytes, sxm_bytes
from tests.scalebar_images import Case, draw_case
from tests.test_infobar import need_tesseract

ACK = ("Checking", "Проверяю")
ALICE = TgUser(3001, "Alice", "alice", "en")
BORIS = TgUser(3002, "Boris", "boris", "ru")
SURE = Case(value=200, unit="nm", nm_per_px=7.34, layout="above", seed=1)  # read with confidence ~0.97
UNSURE = Case(value=230, unit="nm", nm_per_px=7.34, layout="above", seed=1)  # 230 is no usual bar label


def _tiff(rgb: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb)
    return buf.getvalue()


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _dm4() -> bytes:
    tem = disc_image(200, 260, [(60 + 60 * (k % 3), 50 + 60 * (k // 3), 9) for k in range(6)])[..., 0]
    return dm_bytes(tem.astype(np.uint16) * 10, 0.52)


def _doc(api, user, name, data, contains=None, **kw):
    mark = api.mark()
    api.send_document(user, name, data, **kw)
    return api.wait_reply(user.id, mark, contains, skip=ACK, timeout=30.0)


def _send(api, user, text, contains=None):
    mark = api.mark()
    api.send_text(user, text)
    return api.wait_reply(user.id, mark, contains, methods=("sendMessage",))


def _model(bs, user) -> int:
    """A ready model made `user`'s active one (the user row exists once they wrote to the bot)."""
    row = user_row(bs.database_url, user.id)
    with session_scope(bs.database_url) as session:
        model = TrainedModel(user_id=row["id"], version=1, status="ready")
        session.add(model)
        session.flush()
        session.get(User, row["id"]).active_model_id = model.id
        return model.id


def _predict_jobs(bs) -> list[Job]:
    return rows(bs.database_url, Job, kind="predict")


def test_microscope_files_are_images_by_name_and_by_content() -> None:
    heights = np.random.default_rng(0).normal(0, 1e-9, (32, 40))
    assert kind_of("tem.dm4", _dm4()) == "image"
    assert kind_of("scan", _dm4()) == "image"  # no extension: the DM magic says it
    assert kind_of("afm.gwy", gwy_bytes(heights)) == "image"
    assert kind_of("stm.sxm", sxm_bytes(heights)) == "image"
    assert kind_of("movie.prz", b"PK\x03\x04" + bytes(40)) == "image"  # PantaRhei: a zip inside
    assert kind_of("set.zip", b"PK\x03\x04" + bytes(40)) == "zip"
    assert kind_of("notes.bin", bytes(40)) == "unknown"


def test_dm4_and_sem_tiff_summaries_say_where_the_scale_came_from(bs, api) -> None:
    need_tesseract()
    dm4, sem = _dm4(), _tiff(draw_case(SURE).image)
    loaded = read_image(sem, name="sem.tif", info_bar=True)
    bar_summary = loaded.scale_summary("/scale to change")
    assert bar_summary.startswith("scale 7.34 nm/px from the scale bar: 200 nm = ")
    (region,) = loaded.excluded
    with running_bot(bs):
        _send(api, ALICE, "/start")
        _send(api, BORIS, "/start")
        _model(bs, ALICE)
        _model(bs, BORIS)
        reply = _doc(api, ALICE, "tem.dm4", dm4, "tem.dm4")
        assert "tem.dm4: scale 0.52 nm/px from the DM4 file's calibration; /scale to change" in reply.text
        assert "left out" not in reply.text
        api.wait_reply(ALICE.id, 0, "Recognition job")
        reply = _doc(api, ALICE, "sem.tif", sem, "sem.tif")
        assert f"sem.tif: {bar_summary}" in reply.text
        assert f"left out of recognition and statistics: {region.describe()}" in reply.text
        assert "not sure" not in reply.text and buttons(reply) == []
        reply = _doc(api, BORIS, "sem.tif", sem, "sem.tif")
        assert "масштаб 7.34 нм/пкс, источник: масштабная линейка: 200 nm = " in reply.text  # all in Russian
        assert f"не распознаётся и не входит в статистику: {region.label().render('ru')}" in reply.text
        assert "информационная полоса x 0.." in reply.text and "the scale bar" not in reply.text
        # the user's scale wins over the file's, and the summary says so
        _send(api, ALICE, "/scale 5", "5")
        reply = _doc(api, ALICE, "tem2.dm4", dm4, "tem2.dm4")
        assert "scale 5 nm/px as you set it (not the file's 0.52 nm/px from the DM4 file's" in reply.text
        api.wait_for(lambda _: len(_predict_jobs(bs)) == 4, what="four jobs")
    jobs = [PredictParams.from_job(j) for j in _predict_jobs(bs)]
    # no scale of the user's: the job takes the file's (jobs/predict.py); then the /scale one
    assert [j.nm_per_px for j in jobs] == [None, None, None, 5.0]
    assert all(j.scale_bar for j in jobs)  # the scale bar's reading may be used


def test_unsure_scale_bar_is_asked_and_answered_once(bs, api) -> None:
    need_tesseract()
    drawn = draw_case(UNSURE)
    loaded = read_image(_png(drawn.image), name="sem.png", info_bar=True)
    assert loaded.scale_bar is not None and loaded.scale_confidence < ASK_BELOW
    value = f"{loaded.nm_per_px:.3g}"
    with running_bot(bs):
        _send(api, ALICE, "/start")
        boris_chat = _send(api, BORIS, "/start")
        _model(bs, ALICE)
        summary = _doc(api, ALICE, "sem.png", _png(drawn.image), "sem.png")
        assert "not sure of this reading" in summary.text
        ask = api.wait_reply(ALICE.id, 0, "Use it?")
        (upload,) = rows(bs.database_url, Upload, kind="image")
        assert buttons(ask) == [f"sb:use:{upload.id}", f"sb:no:{upload.id}"]
        assert [b["text"] for b in keyboard(ask)[0]] == [f"Use {value} nm/px", "No scale"]
        assert f"confidence {loaded.scale_confidence:.2f}" in ask.text
        assert _predict_jobs(bs) == []  # held for the answer
        # a forged id and another user's upload change nothing
        for who, under, data, says in ((ALICE, ask, "sb:use:99999999999999999999", "expired"),
                                       (BORIS, boris_chat, f"sb:use:{upload.id}", "устарела")):
            mark = api.mark()
            api.press(who, under.result, data)
            api.wait_reply(who.id, mark, says)
        assert _predict_jobs(bs) == []
        mark = api.mark()
        first = api.press(ALICE, ask.result, f"sb:use:{upload.id}")
        queued = api.wait_reply(ALICE.id, mark, "Recognition job")
        assert api.wait_answered(first)
        edited = api.wait_reply(ALICE.id, mark, "as you confirmed", methods=("editMessageText",))
        assert f"sem.png: scale {value} nm/px" in edited.text
        for again in (f"sb:use:{upload.id}", f"sb:no:{upload.id}"):  # the old keyboard, pressed again
            mark = api.mark()
            press = api.press(ALICE, ask.result, again)
            assert api.wait_answered(press)
            assert f"Already answered: job #{_predict_jobs(bs)[0].id}" in _answer_text(api, press)
            time.sleep(0.3)
            assert _said_since(api, mark, ALICE.id, ask.result["message_id"]) == []  # no message, no edit
        # "No scale" for another such image: queued without the bar's reading
        mark = api.mark()
        _doc(api, ALICE, "sem2.png", _png(drawn.image), "sem2.png")
        ask2 = api.wait_reply(ALICE.id, mark, "sem2.png: I read the scale as")
        second = rows(bs.database_url, Upload, kind="image")[-1]
        mark = api.mark()
        api.press(ALICE, ask2.result, f"sb:no:{second.id}")
        api.wait_reply(ALICE.id, mark, "Recognition job")
    assert f"#{_predict_jobs(bs)[0].id}" in queued.text
    use_job, no_job = _predict_jobs(bs)
    use, no = PredictParams.from_job(use_job), PredictParams.from_job(no_job)
    assert use.upload_ids == (upload.id,) and use.nm_per_px == pytest.approx(loaded.nm_per_px)
    assert use.scale_source == f"{loaded.scale_source} (confirmed by you)" and use.scale_bar
    assert no.upload_ids == (second.id,) and no.nm_per_px is None
    assert no.scale_bar is False
    recorded = rows(bs.database_url, Upload, kind="image")[0].summary["scale_ask"]
    assert recorded["answer"] == "use" and recorded["job_id"] == use_job.id


def _answer_text(api, press: dict) -> str:
    """The text the bot answered the button press `press` with (a brief notice on the phone)."""
    query_id = press["callback_query"]["id"]
    with api._lock:
        answers = [c for c in api.calls if c.method == "answerCallbackQuery"
                   and str(c.params.get("callback_query_id")) == query_id]
    return " ".join(str(c.params.get("text") or "") for c in answers)


def _said_since(api, mark: int, chat: int, question_id: int) -> list[str]:
    """What the bot sent to `chat` after `mark`, or changed of the question (not a progress edit)."""
    with api._lock:
        calls = list(api.calls[mark:])
    return [
        c.method
        for c in calls
        if c.chat_id == chat
        and (c.method.startswith("send") or int(c.params.get("message_id") or 0) == question_id)
    ]


def run_predict_job(settings, data: bytes, name: str, params: dict[str, Any], detector) -> dict:
    """jobs/predict.py's body on one uploaded image with `detector` as the user's model, through the
    queue's front door (tests/test_microscope_job.py): the stored Result's summary."""
    from tests.test_microscope_job import run_predict_job as run_job

    (result,) = run_job(settings, {name: ("image", data)}, detector, **params)["results"].values()
    return dict(result.summary)


@pytest.mark.parametrize("answer", ["use", "no"])
def test_the_predict_job_keeps_the_answer(settings, answer) -> None:
    """What the two answers' job params do in jobs/predict.py: the confirmed reading is used and named
    as such; "No scale" drops the bar's reading (sizes in px)."""
    need_tesseract()
    from tests.fake_detector import ThresholdDetector

    data = _png(draw_case(UNSURE).image)
    loaded = read_image(data, name="sem.png", info_bar=True)
    params: dict[str, Any] = {"threshold": 0.1}
    if answer == "use":
        params.update(nm_per_px=loaded.nm_per_px, scale_source="the scale bar (confirmed by you)")
    else:
        params.update(nm_per_px=None, scale_bar=False)
    summary = run_predict_job(settings, data, "sem.png", params, ThresholdDetector(level=140, tile_size=256))
    if answer == "use":
        assert summary["nm_per_px"] == pytest.approx(loaded.nm_per_px)
        assert summary["scale_source"] == "the scale bar (confirmed by you)"
    else:
        assert summary["nm_per_px"] is None and summary.get("scale_source") is None
    assert summary["excluded_regions"]  # the info bar stays left out either way


def _stored_result(store: FileStore, tmp: Path, stem: str, n: int) -> tuple[dict[str, str], dict, SetEntry]:
    from tests.test_bot_delivery import _squares

    image = np.full((80, 80, 3), 40, np.uint8)
    out = tmp / stem
    out.mkdir()
    instances = _squares(n)
    written = write_outputs(out, stem, image, instances, nm_per_px=2.0)
    summary = json.loads(Path(written["summary"]).read_text())
    files = {role: store.put_file(path) for role, path in written.items()}
    return files, summary, SetEntry(stem, f"{stem}.png", image.shape, instances, 2.0, None)


def _finished_job(bs, uid: int, tmp: Path, stems: list[str], where: str) -> tuple[dict[str, str], dict]:
    """A predict job done as jobs/predict.py leaves it: results, set files on the job and in its notice."""
    store = FileStore(bs.files_dir)
    made = [_stored_result(store, tmp, stem, 2 + k) for k, stem in enumerate(stems)]
    written = write_result_set(tmp / f"set-{stems[0]}", [entry for _, _, entry in made])
    set_files = {role: store.put_file(path) for role, path in written.items()}
    with session_scope(bs.database_url) as session:
        job = Job(user_id=uid, kind="predict", state="succeeded", params={}, chat_id=ALICE.id,
                  result={"set_files": set_files} if where == "job" else {})
        session.add(job)
        session.flush()
        for stem, (files, summary, _) in zip(stems, made, strict=True):
            session.add(Result(job_id=job.id, user_id=uid, image_name=f"{stem}.png", files=files,
                               summary=summary))
        payload = {"set_files": set_files} if where == "notice" else {}
        session.add(Notice(user_id=uid, job_id=job.id, kind="predict_done", payload=payload))
    return set_files, {k: Path(v).read_bytes() for k, v in written.items()}


def _sent(url: str) -> int:
    with session_scope(url) as session:
        return sum(1 for n in session.query(Notice).all() if n.sent_at is not None)


def test_results_bring_lab_files_and_the_set_files_exactly_once(bs, api, tmp_path) -> None:
    with session_scope(bs.database_url) as session:
        user = User(telegram_id=ALICE.id, username="alice", language="en", preferences={})
        session.add(user)
        session.flush()
        uid = user.id
    _, small = _finished_job(bs, uid, tmp_path, ["a", "b"], "notice")
    _, big = _finished_job(bs, uid, tmp_path, [f"big{k}" for k in range(6)], "job")
    with running_bot(bs, tick_interval=0.2):
        api.wait_for(lambda _: _sent(bs.database_url) == 2, timeout=30.0, what="both notices sent")
    calls = [c for c in api.calls_to(ALICE.id) if c.method in ("sendPhoto", "sendMediaGroup", "sendDocument")]
    kinds = [c.method for c in calls]
    # the set's files ride in the last image's album (one request fewer per result)
    assert kinds == ["sendPhoto", "sendMediaGroup", "sendPhoto", "sendMediaGroup", "sendDocument"]
    per_image = [[name for name, _ in c.files.values()][:5] for c in (calls[1], calls[3])]
    # what a phone user opens first, then the lab tools' files
    assert per_image == [[f"{s}.json", f"{s}_objects.csv", f"{s}_hist.png", f"{s}_labels.tif",
                          f"{s}_rois.zip"] for s in ("a", "b")]
    assert len(calls[1].files) == 5 and len(calls[3].files) == 5 + 2
    labels = dict(calls[1].files.values())["a_labels.tif"]
    assert labels[:4] in (b"II*\x00", b"MM\x00*")
    assert zipfile.ZipFile(io.BytesIO(dict(calls[1].files.values())["a_rois.zip"])).namelist()
    set_part = dict(list(calls[3].files.values())[5:])
    assert set_part == {"results_coco.json": small["coco"], "results.xlsx": small["xlsx"]}
    coco = json.loads(set_part["results_coco.json"])
    assert len(coco["images"]) == 2 and len(coco["annotations"]) == 2 + 3
    archive = zipfile.ZipFile(io.BytesIO(calls[4].files["document"][1]))
    assert archive.read("results_coco.json") == big["coco"] and archive.read("results.xlsx") == big["xlsx"]
    assert "big0/big0_labels.tif" in archive.namelist() and "big5/big5_rois.zip" in archive.namelist()
    # a restart sends nothing again
    before = len(api.calls_to(ALICE.id))
    with running_bot(bs, tick_interval=0.2):
        time.sleep(1.5)
    assert len(api.calls_to(ALICE.id)) == before


def test_help_says_what_each_output_is_for_and_which_files_are_read(bs, api) -> None:
    with running_bot(bs):
        for user in (ALICE, BORIS):
            text = _send(api, user, "/help", "/scale").text
            for name in ("_labels.tif", "_rois.zip", "results_coco.json", "results.xlsx", "_objects.csv",
                         "DM3/DM4", "TIA .ser", "EMD", "MRC", ".gwy", ".sxm", "pycocotools", "cellpose",
                         "napari"):
                assert name in text, (user.language_code, name)
        assert "ROI Manager" in text and "info bar" not in text  # Boris reads Russian
        en = _send(api, ALICE, "/help", "/scale").text
        assert "Fiji's ROI Manager" in en and "info bar is left out" in en and "send it back" in en
    assert user_row(bs.database_url, BORIS.id)["language"] == "ru"
