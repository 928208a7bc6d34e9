"""The Review Mini App in a real headless Chromium (selenium + chromedriver), with the real bot
Application against the Bot API stand-in and the real web server on localhost:

a result arrives in the chat with a Review button -> its page opens at a phone's size with
Telegram's initData in the fragment -> two objects deleted (a tap on the canvas, a row of the table),
one rod outlined by taps -> Save -> the correction is stored, the chat gets "Correction saved: 2
objects removed, 1 object added" with the Train button -> pressing it queues the training of the next
version. The page's texts come from the gettext catalogs (GET /api/texts) with their plural forms.

Under CI=true a missing browser fails the test; elsewhere it is skipped (deploy/system-packages.sh
installs chromium and chromium-driver)."""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from sqlalchemy import select

from storage.db import session_scope
from storage.files import FileStore
from storage.migrate import upgrade
from storage.models import Job, Notice, TrainedModel, Upload, User
from tests.botapi.fixtures import buttons, keyboard, rows
from tests.botapi.harness import BotApiStandIn, bot_settings, running_bot
from tests.botapi.harness import User as TgUser
from tests.services import need_service
from tests.webapp_helpers import HEIGHT, WIDTH, init_data, stored_result
from web.server import WebServer

ALICE = TgUser(6001, "Alice", "alice", "en")
BOB = TgUser(6002, "Боб", "bob", "ru")
ARTIFACTS = Path("/tmp/segbot-artifacts")
PHONE = (390, 844)


def _browser(phone: bool):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        need_service("chromium and chromedriver", "are not installed (bash deploy/system-packages.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    if phone:  # touch events, a phone's viewport and pixel ratio
        options.add_experimental_option(
            "mobileEmulation",
            {"deviceMetrics": {"width": PHONE[0], "height": PHONE[1], "pixelRatio": 2, "touch": True}},
        )
    else:
        options.add_argument("--window-size=1280,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(30)
    return driver


def _open(driver, url: str, data: str) -> None:
    # what Telegram does: the button's URL plus initData and the client's version in the fragment
    driver.get(f"{url}#tgWebAppData={quote(data)}&tgWebAppVersion=8.0&tgWebAppPlatform=android")
    _until(lambda: driver.execute_script("return document.body.dataset.ready === '1'"), "the page to draw")


def _until(predicate, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _to_viewport(driver, x: float, y: float) -> tuple[int, int]:
    """Image pixel -> viewport CSS px, by the page's first view: the whole image fitted and centred."""
    r = driver.execute_script(
        "const r = document.getElementById('canvas').getBoundingClientRect();"
        "return [r.left, r.top, r.width, r.height];"
    )
    scale = min(r[2] / WIDTH, r[3] / HEIGHT)
    tx, ty = (r[2] - WIDTH * scale) / 2, (r[3] - HEIGHT * scale) / 2
    return round(r[0] + tx + x * scale), round(r[1] + ty + y * scale)


def _tap(driver, x: float, y: float) -> None:
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    finger = PointerInput(interaction.POINTER_TOUCH, "finger")
    actions = ActionBuilder(driver, mouse=finger)
    actions.pointer_action.move_to_location(*_to_viewport(driver, x, y)).pointer_down().pause(
        0.05
    ).pointer_up()
    actions.perform()
    time.sleep(0.05)


def _pinch_out(driver) -> None:
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    cx, cy = _to_viewport(driver, WIDTH / 2, HEIGHT / 2)
    actions = ActionBuilder(driver)
    for name, sign in (("f1", -1), ("f2", 1)):
        finger = actions.add_pointer_input(interaction.POINTER_TOUCH, name)
        finger.create_pointer_move(x=cx + sign * 20, y=cy)
        finger.create_pointer_down()
        finger.create_pointer_move(duration=300, x=cx + sign * 110, y=cy)
        finger.create_pointer_up(0)
    actions.perform()


def _text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def _click(driver, element_id: str) -> None:
    element = driver.find_element("id", element_id)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _min_score(driver, value: str) -> None:
    driver.execute_script(
        "const s = document.getElementById('score'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('input'))",
        value,
    )


def _canvas_pixels(driver) -> str:
    return driver.execute_script("return document.getElementById('canvas').toDataURL()")


def _keep(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)
    return path


def _browser_log(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture
def stack(settings, tmp_path):
    """The stand-in, the web server on a free localhost port, and the bot whose Review buttons point
    at it."""
    api = BotApiStandIn().start()
    plain = bot_settings(settings, api)
    upgrade(plain.database_url)
    with WebServer(plain, port=0) as web:
        bs = bot_settings(settings, api, webapp_url=web.url)
        try:
            with running_bot(bs, tick_interval=0.3):
                yield api, bs, web
        finally:
            api.stop()


def _result_buttons(api, bs, scene, user: TgUser) -> list[list[dict]]:
    """The worker's predict_done notice for the stored result, delivered by the bot: its buttons."""
    mark = api.mark()
    with session_scope(bs.database_url) as session:
        session.add(
            Notice(user_id=scene.user_id, job_id=scene.predict_job_id, kind="predict_done", payload={})
        )
    photo = api.wait_reply(user.id, mark, "cells.png", methods=("sendPhoto",), timeout=20)
    return keyboard(photo)


def _result_in_chat(api, bs, scene, user: TgUser):
    ((button,),) = _result_buttons(api, bs, scene, user)
    return button


@pytest.mark.slow
def test_review_on_a_phone_then_train_the_next_version(stack, tmp_path) -> None:
    api, bs, web = stack
    scene = stored_result(bs, tmp_path, ALICE.id)
    button = _result_in_chat(api, bs, scene, ALICE)
    assert button["text"] == "Review"
    assert button["web_app"]["url"] == f"{web.url}/?result={scene.result_id}"
    assert "callback_data" not in button and bs.token not in button["web_app"]["url"]

    driver = _browser(phone=True)
    try:
        _open(driver, button["web_app"]["url"], init_data(bs.token, ALICE.id))
        assert driver.execute_script("return [innerWidth, innerHeight]") == list(PHONE)
        assert driver.execute_script("return navigator.maxTouchPoints") > 0
        assert "particle: 10" in _text(driver, "counts") and "rod: 3" in _text(driver, "counts")
        before = _canvas_pixels(driver)

        # 1. a tap on particle #2 selects it; Delete
        x, y = scene.instances[1].polygon.mean(axis=0)
        _tap(driver, x, y)
        assert _text(driver, "sel-info").startswith("#2 ")
        _click(driver, "sel-delete")
        assert "particle: 9" in _text(driver, "counts")

        # 2. rod #12 from the table: tap its row, Delete
        row = driver.find_element("css selector", "#table tbody tr[data-key='o12']")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
        row.click()
        assert _text(driver, "sel-info").startswith("#12 ")
        _click(driver, "sel-delete")
        assert "rod: 2" in _text(driver, "counts")
        assert len(driver.find_elements("css selector", "#table tbody tr")) == 11

        # 3. a missed rod, outlined by four taps on the canvas, then Done
        from selenium.webdriver.support.select import Select

        Select(driver.find_element("id", "new-class")).select_by_value("rod")
        _click(driver, "mode-polygon")
        driver.execute_script("window.scrollTo(0, 0)")
        corners = [(140.0, 160.0), (178.0, 162.0), (176.0, 184.0), (141.0, 182.0)]
        for k, (cx, cy) in enumerate(corners, 1):
            _tap(driver, cx, cy)
            assert _text(driver, "draw-hint") == ("1 point" if k == 1 else f"{k} points")
        _click(driver, "draw-done")
        assert "rod: 3" in _text(driver, "counts") and "particle: 9" in _text(driver, "counts")
        assert _text(driver, "save") == "Save correction (12 objects)"
        # undo and redo go through the same steps
        _click(driver, "undo")
        assert "rod: 2" in _text(driver, "counts")
        _click(driver, "redo")
        assert "rod: 3" in _text(driver, "counts")

        # 4. Save
        mark = api.mark()
        _click(driver, "save")
        status = _until(lambda: "Saved" in _text(driver, "status") and _text(driver, "status"), "the save")
        assert status.startswith("Saved: 2 objects removed, 1 object added. The chat has a button")
        driver.execute_script("window.scrollTo(0, 0)")
        shot = _keep(driver, tmp_path, "webapp-review-phone.png")
        assert shot.stat().st_size > 10_000

        # pinch zoom changes the view; Fit brings back the first one
        _click(driver, "mode-select")
        driver.execute_script("window.scrollTo(0, 0)")
        fitted = _canvas_pixels(driver)
        assert fitted != before  # the edits are drawn
        _pinch_out(driver)
        zoomed = _canvas_pixels(driver)
        assert zoomed != fitted
        _click(driver, "fit")
        assert _canvas_pixels(driver) == fitted
        assert _browser_log(driver) == []
    finally:
        driver.quit()

    # the stored correction: -2, +1, the right class, through the LabelMe validator's path
    (upload,) = rows(bs.database_url, Upload, kind="correction")
    assert upload.corrects_result_id == scene.result_id and upload.user_id == scene.user_id
    doc = json.loads(FileStore(bs.files_dir).read_bytes(upload.sha256))
    shapes = doc["shapes"]
    assert len(shapes) == 12
    assert [s["label"] for s in shapes].count("rod") == 3 and [s["label"] for s in shapes].count(
        "particle"
    ) == 9
    kept = [np.asarray(s["points"]) for s in shapes[:-1]]
    expected = [inst.polygon for k, inst in enumerate(scene.instances) if k not in (1, 11)]
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(kept, expected, strict=True))
    new = shapes[-1]
    assert new["label"] == "rod" and new["shape_type"] == "polygon"
    assert np.allclose(new["points"], corners, atol=1.0)  # where the finger tapped, in image pixels

    # the chat: the outbox notice, delivered by the bot, with the Train button
    saved = api.wait_reply(ALICE.id, mark, "Correction saved: 2 objects removed, 1 object added.", timeout=20)
    assert "cells.png: 12 objects now" in saved.text
    assert buttons(saved) == [f"corr:{upload.id}"]
    (notice,) = rows(bs.database_url, Notice, kind="correction_saved")
    assert notice.sent_at is not None

    # Train the next version: the job for v2 is queued, on v1's training set plus the correction
    mark = api.mark()
    api.press(ALICE, saved.result, f"corr:{upload.id}")
    api.wait_reply(ALICE.id, mark, "Training job")
    (job,) = rows(bs.database_url, Job, kind="train", state="queued")
    assert job.params["upload_ids"] == [scene.training_upload_id, upload.id]
    assert job.params["options"]["arch"] == "tiny" and job.user_id == scene.user_id


@pytest.mark.slow
def test_desktop_browser_in_russian(stack, tmp_path) -> None:
    """A mouse, a wide window and a Russian user: texts, click to select, the Delete key, sorting."""
    api, bs, web = stack
    scene = stored_result(bs, tmp_path, BOB.id, language="ru", username="bob")
    button = _result_in_chat(api, bs, scene, BOB)
    assert button["text"] == "Проверить"
    driver = _browser(phone=False)
    try:
        _open(driver, button["web_app"]["url"], init_data(bs.token, BOB.id, language="ru", username="bob"))
        assert _text(driver, "save") == "Сохранить исправление (13 объектов)"
        assert _text(driver, "mode-polygon") == "Контур"
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        canvas = driver.find_element("id", "canvas")
        x, y = _to_viewport(driver, *scene.instances[0].polygon.mean(axis=0))
        r = driver.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top]", canvas
        )
        ActionChains(driver).move_to_element_with_offset(
            canvas, x - r[0] - canvas.size["width"] / 2, y - r[1] - canvas.size["height"] / 2
        ).click().perform()
        assert _text(driver, "sel-info").startswith("#1 ")
        driver.find_element("tag name", "body").send_keys(Keys.DELETE)
        assert "particle: 9" in _text(driver, "counts")
        # the score filter hides (and will not save) the low-confidence objects
        _min_score(driver, "0.6")
        assert _text(driver, "save") == "Сохранить исправление (8 объектов)"
        assert _text(driver, "hidden-count") == "(скрыто 4 объекта, не сохранятся)"
        driver.find_element("css selector", "#table th[data-key='d']").click()
        ds = [float(td.text) for td in driver.find_elements("css selector", "#table tbody td:nth-child(3)")]
        assert ds == sorted(ds) and len(ds) == 8
        # Russian plurals, picked by Intl.PluralRules from the catalog's forms: 3 and 1 shown, 9 and 11 hidden
        _min_score(driver, "0.85")
        assert _text(driver, "save") == "Сохранить исправление (3 объекта)"
        assert _text(driver, "hidden-count") == "(скрыто 9 объектов, не сохранятся)"
        _min_score(driver, "0.91")
        assert _text(driver, "save") == "Сохранить исправление (1 объект)"
        assert _text(driver, "hidden-count") == "(скрыто 11 объектов, не сохранятся)"
        _keep(driver, tmp_path, "webapp-review-desktop-ru.png")
        assert _browser_log(driver) == []
    finally:
        driver.quit()
    assert rows(bs.database_url, Upload, kind="correction") == []  # nothing saved without Save


def _waiting_ru(driver) -> int:
    """How many of the model's proposals the Russian warning says are waiting in the crops."""
    return int(_text(driver, "warnings").split(" предложени")[0].split()[-1])


def _holds(crop: list[float], instance) -> bool:
    x, y = instance.polygon.mean(axis=0)
    return crop[0] <= x <= crop[2] and crop[1] <= y <= crop[3]


def _drag(driver, start: tuple[float, float], end: tuple[float, float]) -> None:
    """One finger from `start` to `end` (image pixels)."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    finger = PointerInput(interaction.POINTER_TOUCH, "finger")
    actions = ActionBuilder(driver, mouse=finger)
    (x0, y0), (x1, y1) = _to_viewport(driver, *start), _to_viewport(driver, *end)
    actions.pointer_action.move_to_location(x0, y0).pointer_down()
    for k in range(1, 6):
        actions.pointer_action.move_to_location(x0 + (x1 - x0) * k // 5, y0 + (y1 - y0) * k // 5)
    actions.pointer_action.pointer_up()
    actions.perform()
    time.sleep(0.05)


def _tap_and_wait(driver, x: float, y: float) -> None:
    """A tap in Tap mode, then the server's proposal drawn."""
    done = int(driver.execute_script("return Number(document.body.dataset.proposals || 0)"))
    _tap(driver, x, y)
    _until(lambda: int(driver.execute_script("return Number(document.body.dataset.proposals || 0)")) > done,
           "the proposed outline")


@pytest.mark.slow
def test_label_an_image_on_a_phone_then_train(stack, tmp_path) -> None:
    """A new user with only a phone, from /start to a recognised image without LabelMe: her first
    image labelled on the page (two crops, nine particles by taps, one tap's outline rejected, one
    circle by hand); Save; the chat's summary; Train now; the model trains (a real worker's job
    body); her next image is recognised with it."""
    from annotations.geometry import polygon_area
    from annotations.labelme import read_labelme
    from annotations.model import Instance
    from jobqueue.runner import drain
    from tests.webapp_helpers import scene_image, scene_instances

    api, bs, web = stack
    instances = scene_instances()
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(scene_image(instances)).save(buffer, format="PNG")
    mark = api.mark()
    api.send_text(ALICE, "/start")
    api.wait_reply(ALICE.id, mark, "segbot")
    mark = api.mark()
    api.send_document(ALICE, "cells.png", buffer.getvalue(), mime_type="image/png")
    reply = api.wait_reply(ALICE.id, mark, "no model yet", timeout=20)
    ((button,),) = keyboard(reply)
    (image,) = rows(bs.database_url, Upload, kind="image")
    assert button["text"] == "Label cells.png"
    assert button["web_app"]["url"] == f"{web.url}/?image={image.id}"

    particles = [inst.polygon.mean(axis=0) for inst in instances[:10]]
    driver = _browser(phone=True)
    try:
        _open(driver, button["web_app"]["url"], init_data(bs.token, ALICE.id))
        assert "on" in driver.find_element("id", "mode-crop").get_attribute("class").split()
        assert "Draw at least one crop" in _text(driver, "warnings")
        # 1. two crops: the two rows of particles (the rods below stay outside)
        _drag(driver, (4, 20), (316, 72))
        _drag(driver, (4, 98), (316, 152))
        assert [li.text for li in driver.find_elements("css selector", "#crop-list li")] == [
            "crop 1: 0 objects", "crop 2: 0 objects"]
        # 2. taps: each proposes the particle's outline (accepted as it is)
        _click(driver, "mode-tap")
        driver.execute_script("window.scrollTo(0, 0)")
        for x, y in particles[:9]:
            _tap_and_wait(driver, x + 2, y - 1)  # a finger is never exactly on the centre
        # the size slider nudges the last one; undo takes the nudge back
        area = driver.execute_script("return document.getElementById('sel-info').textContent")
        driver.execute_script(
            "const s = document.getElementById('sel-size'); s.value = '1.2';"
            "s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'))")
        assert _text(driver, "sel-info") != area
        _click(driver, "undo")
        assert _text(driver, "sel-info") == area
        # 3. the tenth: a tap whose outline she rejects, then a circle by hand
        assert "crop 2: 1 particle-like spot has no outline yet" in _text(driver, "warnings")
        driver.execute_script("window.scrollTo(0, 0)")
        _tap_and_wait(driver, *particles[9])
        assert _text(driver, "save") == "Save labels (10 objects)"
        _click(driver, "sel-delete")
        assert _text(driver, "save") == "Save labels (9 objects)"
        _click(driver, "mode-circle")
        driver.execute_script("window.scrollTo(0, 0)")
        cx, cy = particles[9]
        r = (instances[9].polygon[:, 0].max() - instances[9].polygon[:, 0].min()) / 2
        _drag(driver, (cx, cy), (cx + r, cy))
        assert [li.text for li in driver.find_elements("css selector", "#crop-list li")] == [
            "crop 1: 5 objects", "crop 2: 5 objects"]
        assert "particle-like" not in _text(driver, "warnings")
        # 4. Save
        mark = api.mark()
        _click(driver, "save")
        _until(lambda: "Saved" in _text(driver, "status"), "the save")
        driver.execute_script("window.scrollTo(0, 0)")
        _keep(driver, tmp_path, "webapp-label-phone.png")
        assert _browser_log(driver) == []
    finally:
        driver.quit()

    # the stored LabelMe file passes the chat's validator: 2 crops, 10 particles where they are
    (labels,) = rows(bs.database_url, Upload, kind="labelme")
    ann = read_labelme(FileStore(bs.files_dir).read_bytes(labels.sha256), name="labels.json")
    assert len(ann.crops) == 2 and len(ann.instances) == 10
    centres = np.array([i.polygon.mean(axis=0) for i in ann.instances])
    for k, (x, y) in enumerate(particles):
        dist = np.hypot(centres[:, 0] - x, centres[:, 1] - y)
        assert dist.min() < 3, k
        drawn = polygon_area(ann.instances[int(dist.argmin())].polygon)
        assert abs(drawn / polygon_area(instances[k].polygon) - 1) < 0.2, k

    # the chat: the usual summary with Train now, which trains on exactly this label set
    summary = api.wait_reply(ALICE.id, mark, "Labels received", timeout=20)
    assert "2 crops" in summary.text and "10 objects" in summary.text
    assert "train:go" in buttons(summary)
    # a CPU test affords 2 iterations: her saved training options are what the job reads
    with session_scope(bs.database_url) as session:
        user = session.scalar(select(User).where(User.telegram_id == ALICE.id))
        user.preferences = {**user.preferences, "train_options": {"arch": "tiny", "iterations": 2}}
    mark = api.mark()
    api.press(ALICE, summary.result, "train:go")
    api.wait_reply(ALICE.id, mark, "Training job", timeout=20)
    (job,) = rows(bs.database_url, Job, kind="train", state="queued")
    assert job.params["upload_ids"] == [labels.id]

    # the worker trains on it; the chat says the model is ready
    assert drain(bs, "train") == 1
    (done,) = rows(bs.database_url, Job, kind="train")
    assert done.state == "succeeded", done.error
    api.wait_reply(ALICE.id, mark, "Model v1 is ready", timeout=60)
    # her next image, recognised with that model (a 2-iteration model scores low: the lowest threshold)
    mark = api.mark()
    api.send_text(ALICE, "/threshold 0.05")
    api.wait_reply(ALICE.id, mark, "0.05")
    mark = api.mark()
    moved = [Instance(i.label, i.polygon + [14, 9], None) for i in instances]  # another field of view
    buffer = io.BytesIO()
    Image.fromarray(scene_image(moved)).save(buffer, format="PNG")
    api.send_document(ALICE, "next.png", buffer.getvalue(), mime_type="image/png")
    api.wait_reply(ALICE.id, mark, "Recognition job", timeout=20)
    assert drain(bs, "predict") == 1
    (recognised,) = rows(bs.database_url, Job, kind="predict")
    assert recognised.state == "succeeded", recognised.error
    (model,) = rows(bs.database_url, TrainedModel, job_id=done.id)
    assert recognised.model_id == model.id  # the model her labels trained
    photo = api.wait_reply(ALICE.id, mark, "next.png", methods=("sendPhoto",), timeout=60)
    assert photo.files["photo"][1].startswith(b"\x89PNG")
    assert "Review" in [b["text"] for row in keyboard(photo) for b in row]


@pytest.mark.slow
def test_label_where_it_helps_most_on_a_desktop_in_russian(stack, tmp_path) -> None:
    """A result's image opened from "Label where the model is least sure": the suggested crops around the
    model's least sure outlines and its guess under the threshold, its outlines dashed, the guess dotted;
    a click accepts one; "accept all" leaves the guess to her; Russian texts and plurals."""
    from annotations.model import Instance
    from annotations.suggest import suggest_crops
    from tests.webapp_helpers import ellipse, stored_image, stored_unsure

    api, bs, web = stack
    scene = stored_result(bs, tmp_path, BOB.id, language="ru", username="bob")
    # a particle between the others and the rods that the model scored under her threshold
    guess = Instance("particle", ellipse(165, 168, 14, 14), 0.5)
    image_id = stored_image(bs, scene, missed=(guess,))
    stored_unsure(bs, scene, [guess])
    suggested = suggest_crops(scene.instances, WIDTH, HEIGHT, unsure=[guess])
    assert any(_holds(c, guess) for c in suggested)
    (review, label), (suggest,) = _result_buttons(api, bs, scene, BOB)
    assert suggest["text"] == "Разметить, где модель сомневается"
    driver = _browser(phone=False)
    try:
        _open(driver, suggest["web_app"]["url"], init_data(bs.token, BOB.id, language="ru", username="bob"))
        crops = [li.text for li in driver.find_elements("css selector", "#crop-list li")]
        assert 1 <= len(crops) <= 3 and crops[0] == "кроп 1: 0 объектов"
        n = len(crops)
        assert _text(driver, "status").startswith(f"{n} кроп{'' if n == 1 else 'а'}, где модель меньше всего")
        # only the model's outlines in the crops are drawn and counted (13 in all), and its guess; the
        # guess is not among those "accept all" would take
        waiting = _waiting_ru(driver)
        assert 4 <= waiting < 14 and _text(driver, "accept-all").startswith(f"Принять {waiting - 1} контур")
        assert _text(driver, "save") == "Сохранить разметку (0 объектов)"
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        canvas = driver.find_element("id", "canvas")

        def click_on(instance) -> None:
            x, y = _to_viewport(driver, *instance.polygon.mean(axis=0))
            r = driver.execute_script(
                "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top]", canvas
            )
            ActionChains(driver).move_to_element_with_offset(
                canvas, x - r[0] - canvas.size["width"] / 2, y - r[1] - canvas.size["height"] / 2
            ).click().perform()

        doubtful = min(scene.instances, key=lambda i: abs(i.score - 0.5))  # inside the first crop
        click_on(doubtful)
        assert _text(driver, "save") == "Сохранить разметку (0 объектов)"  # a click only selects it
        assert _text(driver, "verdict-yes") == "✓ particle"
        assert _text(driver, "verdict-no") == "✗ Здесь ничего нет"
        _click(driver, "verdict-yes")
        assert _text(driver, "save") == "Сохранить разметку (1 объект)"
        assert ": 1 объект\n" in _text(driver, "crop-list") + "\n"
        assert _waiting_ru(driver) == waiting - 1
        # on a keyboard: Delete is ✗ (one more of the suggested crops' outlines), Enter is ✓ (the guess,
        # named as one; "accept all" would have left it)
        assert any(_holds(c, doubtful) for c in suggested)
        first = next(i for i in scene.instances if i is not doubtful and any(_holds(c, i) for c in suggested))
        click_on(first)
        driver.find_element("tag name", "body").send_keys(Keys.DELETE)
        assert _waiting_ru(driver) == waiting - 2
        assert _text(driver, "save") == "Сохранить разметку (1 объект)"
        click_on(guess)
        assert _text(driver, "sel-info").startswith("Догадка модели ниже вашего порога · D ")
        driver.execute_script("window.scrollTo(0, 0)")
        _keep(driver, tmp_path, "webapp-label-desktop-ru.png")
        driver.find_element("tag name", "body").send_keys(Keys.ENTER)
        assert _waiting_ru(driver) == waiting - 3
        assert _text(driver, "save") == "Сохранить разметку (2 объекта)"
        # the rest of the model's outlines in the crops, at once
        n = waiting - 3
        accept = _text(driver, "accept-all")
        assert accept.startswith(f"Принять {n} контур") and accept.endswith("модели в кропах")
        _click(driver, "accept-all")
        many = "объекта" if (n + 2) % 10 in (2, 3, 4) and (n + 2) % 100 not in (12, 13, 14) else "объектов"
        assert _text(driver, "save") == f"Сохранить разметку ({n + 2} {many})"
        assert not driver.find_element("id", "accept-all").is_displayed()
        assert "предложени" not in _text(driver, "warnings")  # nothing left waiting
        assert _browser_log(driver) == []
    finally:
        driver.quit()
    assert review["web_app"]["url"].endswith(f"?result={scene.result_id}")
    assert label["web_app"]["url"].endswith(f"?image={image_id}")


FALSE_POSITIVE = (123.0, 85.0, 10.0)  # x, y, r: the model's outline on an empty spot
MISSED = (123.0, 170.0, 12.0)  # a particle the model did not find
BLOB = 8  # the scene's particle the model outlines as a blob twice its diameter (a young model's)


def _model_scene(bs, tmp_path: Path):
    """Alice's model v1 recognised her image: the scene's 13 outlines (particle BLOB's twice its
    diameter) plus one on an empty spot (a false positive), and no outline on one particle (missed).
    (the image upload's id, the result's LabelMe sha256)"""
    from PIL import Image

    from annotations.model import Instance
    from outputs.files import write_outputs
    from storage.models import Result
    from tests.webapp_helpers import ellipse, scene_image

    scene = stored_result(bs, tmp_path, ALICE.id)
    fx, fy, fr = FALSE_POSITIVE
    mx, my, mr = MISSED
    picture = scene_image([*scene.instances, Instance("particle", ellipse(mx, my, mr, mr), None)])
    particle = scene.instances[BLOB].polygon
    (bx, by), d = particle.mean(axis=0), float(np.ptp(particle[:, 0]))
    blob = Instance("particle", ellipse(bx, by, d, d), 0.99)  # radius = the particle's diameter
    model = [*scene.instances[:BLOB], blob, *scene.instances[BLOB + 1 :]]
    model.append(Instance("particle", ellipse(fx, fy, fr, fr), 0.41))
    written = write_outputs(tmp_path / "v1", "cells", picture, model, image_name="cells.png")
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    store = FileStore(bs.files_dir)
    with session_scope(bs.database_url) as session:
        upload = Upload(
            user_id=scene.user_id,
            kind="image",
            original_name="cells.png",
            sha256=store.put_bytes(buffer.getvalue()),
            size=len(buffer.getvalue()),
            summary={},
        )
        session.add(upload)
        session.flush()
        result = session.get(Result, scene.result_id)
        labelme = store.put_file(written["labelme"])
        result.upload_id, result.files = upload.id, {**result.files, "labelme": labelme}
        return scene, upload.id, labelme


def _shown_d(driver) -> float:
    """The selected outline's D, as the selection bar says it ("#8 · D 36 px · 0.99")."""
    return float(_text(driver, "sel-info").split(" · D ")[1].split()[0])


def _warned(driver, n: int) -> bool:
    return f"{n} model proposal{'' if n == 1 else 's'} to accept" in _text(driver, "warnings")


@pytest.mark.slow
def test_label_with_the_models_outlines_on_a_phone(stack, tmp_path) -> None:
    """Her model's outlines while labelling on a phone: drawn in the crops, where a tap selects one
    and ✓ or ✗ decides it (✗ on the model's outline of an empty spot); outside the crops a tap takes
    the model's outline there (her model's blob over a particle: "↻ Other outline" swaps it for the
    contrast proposer's, one undoable step), and where the model has none the proposer answers."""
    from annotations.geometry import polygon_area
    from annotations.labelme import read_labelme

    api, bs, web = stack
    scene, image_id, labelme = _model_scene(bs, tmp_path)
    store = FileStore(bs.files_dir)
    stored = read_labelme(store.read_bytes(labelme), name="result.json").instances
    top = [inst.polygon.mean(axis=0) for inst in scene.instances[:5]]
    seventh = scene.instances[7].polygon.mean(axis=0)  # bottom row, outside the first crop
    blob = scene.instances[BLOB].polygon.mean(axis=0)
    fx, fy, _ = FALSE_POSITIVE
    driver = _browser(phone=True)
    try:
        _open(driver, f"{web.url}/?image={image_id}", init_data(bs.token, ALICE.id))
        assert _warned(driver, 14)  # no crop yet: all her model's outlines are drawn
        _drag(driver, (4, 20), (316, 100))  # crop 1: the top row and the empty spot
        assert _warned(driver, 6)  # now only those in the crop
        _click(driver, "mode-tap")
        driver.execute_script("window.scrollTo(0, 0)")
        # the model's outline on an empty spot: a tap selects it (and decides nothing), ✗ rejects it
        _tap_and_wait(driver, fx + 2, fy - 1)
        assert driver.find_element("id", "verdict").is_displayed()
        assert (_text(driver, "verdict-yes"), _text(driver, "verdict-no")) == ("✓ particle", "✗ Nothing here")
        assert _text(driver, "sel-info").startswith("Model's proposal · D ")
        assert _text(driver, "save") == "Save labels (0 objects)"
        driver.execute_script("window.scrollTo(0, 0)")
        _keep(driver, tmp_path, "webapp-label-model-phone.png")
        _click(driver, "verdict-no")
        assert _warned(driver, 5) and not driver.find_element("id", "verdict").is_displayed()
        _click(driver, "undo")
        assert _warned(driver, 6)
        _click(driver, "redo")
        assert _warned(driver, 5)
        # a real one: tap, ✓; then the rest of the crop's at once
        driver.execute_script("window.scrollTo(0, 0)")
        _tap_and_wait(driver, *top[0])
        _click(driver, "verdict-yes")
        assert _text(driver, "save") == "Save labels (1 object)" and _warned(driver, 4)
        _click(driver, "accept-all")
        assert _text(driver, "save") == "Save labels (5 objects)"
        # the rejected spot tapped again: the model's outline does not come back, the image has nothing
        driver.execute_script("window.scrollTo(0, 0)")
        _tap_and_wait(driver, fx, fy)
        assert _text(driver, "status").startswith("Nothing stands out here")
        assert _text(driver, "save") == "Save labels (5 objects)"
        # outside the crop the model's outlines are not drawn, but a tap on a particle takes its one
        _tap_and_wait(driver, seventh[0] + 2, seventh[1] - 1)
        assert _text(driver, "save") == "Save labels (6 objects)"
        assert _text(driver, "status").startswith("Your model's outline.")
        assert not driver.find_element("id", "sel-other").is_displayed()  # the proposer agrees there
        # the model's blob over a particle: the proposer's outline differs, one button swaps them
        _tap_and_wait(driver, blob[0] + 2, blob[1] - 1)
        assert _text(driver, "save") == "Save labels (7 objects)"
        assert _text(driver, "status").startswith("Your model's outline; the contrast outline differs")
        assert _text(driver, "sel-other") == "↻ Other outline"
        d_model = _shown_d(driver)
        driver.execute_script("window.scrollTo(0, 0)")
        _keep(driver, tmp_path, "webapp-label-other-phone.png")
        _click(driver, "sel-other")
        assert _text(driver, "status").startswith("Contrast outline")
        assert 1.7 < d_model / _shown_d(driver) < 2.3 and _text(driver, "save") == "Save labels (7 objects)"
        _click(driver, "undo")  # the swap is one step, and the status line follows it
        assert _shown_d(driver) == d_model
        assert _text(driver, "status").startswith("Your model's outline; the contrast outline differs")
        _click(driver, "redo")
        assert 1.7 < d_model / _shown_d(driver) < 2.3
        assert _text(driver, "status").startswith("Contrast outline")
        # where the model has no outline, the contrast threshold outlines the particle it missed
        driver.execute_script("window.scrollTo(0, 0)")
        _tap_and_wait(driver, MISSED[0] + 2, MISSED[1] - 1)
        assert _text(driver, "save") == "Save labels (8 objects)"
        assert not driver.find_element("id", "sel-other").is_displayed()  # no model outline to swap
        # crop 2: the bottom row with both; its other three model outlines accepted at once
        _click(driver, "mode-crop")
        driver.execute_script("window.scrollTo(0, 0)")
        _drag(driver, (4, 100), (316, 190))
        assert _warned(driver, 3)
        _click(driver, "accept-all")
        _click(driver, "save")
        _until(lambda: "Saved" in _text(driver, "status"), "the save")
        # opened again: her 11 outlines; the model's in her saved crops were all decided, none is back
        driver.refresh()
        _until(lambda: driver.execute_script("return document.body.dataset.ready === '1'"), "the reload")
        assert _text(driver, "save") == "Save labels (11 objects)"
        assert "model proposal" not in _text(driver, "warnings")
        assert _browser_log(driver) == []
    finally:
        driver.quit()

    (labels,) = rows(bs.database_url, Upload, original_name="cells_labels.json")
    ann = read_labelme(store.read_bytes(labels.sha256), name="labels.json")
    assert len(ann.crops) == 2 and len(ann.instances) == 11
    centres = np.array([i.polygon.mean(axis=0) for i in ann.instances])
    assert np.hypot(centres[:, 0] - fx, centres[:, 1] - fy).min() > 20  # the rejected proposal is not there

    def at(x: float, y: float, outlines) -> np.ndarray:
        return min(outlines, key=lambda p: float(np.hypot(*(p.mean(axis=0) - (x, y))))).copy()

    # the tap outside the crop saved the model's own outline, vertex for vertex
    taken, model = at(*seventh, [i.polygon for i in ann.instances]), at(*seventh, [i.polygon for i in stored])
    assert taken.shape == model.shape and np.allclose(taken, model, atol=0.01)
    # the missed particle's outline is the proposer's: its area, where no model outline is
    mx, my, mr = MISSED
    drawn = at(mx, my, [i.polygon for i in ann.instances])
    assert np.hypot(*(drawn.mean(axis=0) - (mx, my))) < 3
    assert abs(polygon_area(drawn) / (np.pi * mr * mr) - 1) < 0.2
    assert np.hypot(*(at(mx, my, [i.polygon for i in stored]).mean(axis=0) - (mx, my))) > 20
    # the blob swapped for the proposer's outline: the particle's area, saved
    particle = scene.instances[BLOB].polygon
    swapped = at(*blob, [i.polygon for i in ann.instances])
    assert abs(polygon_area(swapped) / polygon_area(particle) - 1) < 0.2
    assert polygon_area(at(*blob, [i.polygon for i in stored])) > 3 * polygon_area(particle)
