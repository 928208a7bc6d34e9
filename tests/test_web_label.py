"""Label mode's API (web.labeling), served for real over a migrated SQLite database: an image she
sent, outlines proposed around taps, crops and outlines saved as a LabelMe training file through
the chat's intake; who may call what; bad bodies refused with nothing stored."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from annotations.geometry import polygon_area
from annotations.labelme import read_labelme
from storage.db import session_scope
from storage.files import FileStore
from storage.models import Notice, Upload, User
from tests.botapi.fixtures import rows
from tests.test_web_api import _environment, assert_refused, caller_client, callers, client, stored_counts
from tests.webapp_helpers import HEIGHT, WIDTH, stored_image
from web.server import WebServer


def _served(data_dir, tmp):
    """A server with Alice's and Bob's results; Alice's image is kept (Label opens it)."""
    s, alice, bob = _environment(data_dir, tmp)
    image_id = stored_image(s, alice)
    bob_image = stored_image(s, bob, link_result=False)
    with WebServer(s, port=0) as running:
        yield s, alice, image_id, bob_image, running


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """One server for the tests that must leave everything as it was (they check it)."""
    tmp = tmp_path_factory.mktemp("weblabel")
    yield from _served(tmp / "data", tmp)


@pytest.fixture
def fresh(settings, tmp_path):
    """A server of this test's own (for a test that stores something)."""
    yield from _served(settings.data_dir, tmp_path)


def _crop_around(polygon, margin=4.0) -> list[float]:
    (x0, y0), (x1, y1) = polygon.min(axis=0), polygon.max(axis=0)
    return [float(x0 - margin), float(y0 - margin), float(x1 + margin), float(y1 + margin)]


def test_tap_save_reopen_and_save_again(fresh) -> None:
    ws, alice, image_id, _, server = fresh
    with client(server) as c:
        view = c.get(f"/api/images/{image_id}").json()
        assert view["image"] == {"id": image_id, "name": "cells.png", "width": WIDTH, "height": HEIGHT}
        assert view["crops"] == [] and view["objects"] == []
        assert len(view["proposals"]) == len(alice.instances)  # the model's outlines of this image
        assert len(view["blobs"]) >= 10  # particle-like spots, for the "missed one?" warning
        # "Label where the model is least sure": the first crop holds the model's most doubtful outline (0.38)
        x0, y0, x1, y1 = view["suggested"][0]
        least_sure = min(view["proposals"], key=lambda o: abs(o["score"] - 0.5))
        lx, ly = np.mean(least_sure["points"], axis=0)
        assert x0 <= lx <= x1 and y0 <= ly <= y1 and len(view["suggested"]) <= 3
        png = c.get(f"/api/images/{image_id}/image")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"

        # a tap near the middle of particle 3 (radius 18 px on the scene image) proposes its outline
        target = alice.instances[2].polygon
        cx, cy = target.mean(axis=0)
        proposed = c.post(f"/api/images/{image_id}/propose", json={"x": cx + 3, "y": cy - 2}).json()
        d = 2 * math.sqrt(polygon_area(proposed["points"]) / math.pi)
        d_true = 2 * math.sqrt(polygon_area(target) / math.pi)
        assert abs(d - d_true) <= 0.1 * d_true
        assert c.post(f"/api/images/{image_id}/propose", json={"x": 5, "y": 235}).json()["points"] is None

        crops = [_crop_around(alice.instances[k].polygon) for k in (2, 6)]
        objects = [
            {"label": "particle", "shape_type": "polygon", "points": proposed["points"]},
            {"label": "particle", "shape_type": "circle",
             "points": [alice.instances[6].polygon.mean(axis=0).tolist(), [0, 0]]},
        ]
        objects[1]["points"][1] = [objects[1]["points"][0][0] + 15, objects[1]["points"][0][1]]
        saved = c.post(f"/api/images/{image_id}/labels", json={"crops": crops, "objects": objects})
        assert saved.status_code == 200, saved.text
        first = saved.json()
        assert (first["n_crops"], first["n_objects"], first["image_id"]) == (2, 2, image_id)

        # the stored file is a LabelMe document the chat's validator reads back, image inside
        (upload,) = rows(ws.database_url, Upload, original_name="cells_labels.json")
        assert upload.id == first["upload_id"] and (upload.kind, upload.user_id) == ("labelme", alice.user_id)
        ann = read_labelme(FileStore(ws.files_dir).read_bytes(upload.sha256), name="x")
        assert (ann.width, ann.height, len(ann.crops), len(ann.instances)) == (WIDTH, HEIGHT, 2, 2)
        assert abs(polygon_area(ann.instances[0].polygon) - polygon_area(proposed["points"])) < 1
        (notice,) = rows(ws.database_url, Notice, kind="labels_saved")
        assert notice.user_id == alice.user_id and notice.payload["upload_id"] == upload.id
        assert notice.payload["summary"]["n_objects"] == 2 and notice.payload["pending_count"] == 1

        # reopened: her crops and outlines come back to extend; a second save replaces the first
        again = c.get(f"/api/images/{image_id}").json()
        assert len(again["crops"]) == 2 and len(again["objects"]) == 2
        rod = alice.instances[10].polygon
        objects.append({"label": "rod", "shape_type": "polygon", "points": rod.tolist()})
        crops.append(_crop_around(alice.instances[10].polygon))
        second = c.post(f"/api/images/{image_id}/labels", json={"crops": crops, "objects": objects}).json()
    with session_scope(ws.database_url) as session:
        assert session.get(User, alice.user_id).preferences["pending_uploads"] == [second["upload_id"]]
        assert session.get(Upload, image_id).summary["labels_upload_id"] == second["upload_id"]


def _recognised_again(ws, alice, tmp, image_sha: str | None, n: int) -> tuple[int, int]:
    """Alice's model v2 (not active) recognised the same picture sent again: its first `n` outlines.
    (the new image upload's id, v2's model id)"""
    from outputs.files import write_outputs
    from storage.models import Job, Result, TrainedModel
    from tests.webapp_helpers import scene_image

    store = FileStore(ws.files_dir)
    picture = scene_image(alice.instances)
    written = write_outputs(tmp / "v2", "cells", picture, alice.instances[:n], image_name="cells.png")
    with session_scope(ws.database_url) as session:
        again = Upload(user_id=alice.user_id, kind="image", original_name="cells-again.png",
                       sha256=image_sha, size=1, summary={})
        model = TrainedModel(user_id=alice.user_id, version=2, status="ready")
        session.add_all([again, model])
        session.flush()
        job = Job(user_id=alice.user_id, kind="predict", state="succeeded", model_id=model.id)
        session.add(job)
        session.flush()
        session.add(Result(job_id=job.id, user_id=alice.user_id, upload_id=again.id, image_name="cells.png",
                           image_sha256=image_sha, files={"labelme": store.put_file(written["labelme"])}))
        return again.id, model.id


def test_the_model_outlines_come_from_her_active_models_recognition(fresh, tmp_path) -> None:
    """The page offers (and answers taps from) the outlines of her active model's recognition of the
    image, found also through the same picture sent again; a newer result of another model does not
    replace them until that model is made active."""
    ws, alice, image_id, _, server = fresh
    with session_scope(ws.database_url) as session:
        sha = session.get(Upload, image_id).sha256
    again_id, v2 = _recognised_again(ws, alice, tmp_path, sha, n=4)
    with client(server) as c:
        for shown in (image_id, again_id):  # v1 is active: its 13 outlines on both uploads
            proposals = c.get(f"/api/images/{shown}").json()["proposals"]
            assert len(proposals) == len(alice.instances)
            assert np.allclose(proposals[5]["points"], alice.instances[5].polygon, atol=0.01)
        with session_scope(ws.database_url) as session:
            session.get(User, alice.user_id).active_model_id = v2
        for shown in (image_id, again_id):
            assert len(c.get(f"/api/images/{shown}").json()["proposals"]) == 4
        with session_scope(ws.database_url) as session:  # no active model: the newest recognition
            session.get(User, alice.user_id).active_model_id = None
        assert len(c.get(f"/api/images/{image_id}").json()["proposals"]) == 4


def test_another_users_recognition_of_the_same_picture_is_not_offered(fresh, tmp_path) -> None:
    """Bob's image is the same picture as Alice's result (same sha256): his page offers no outlines."""
    from storage.models import Result
    from tests.test_web_api import BOB

    ws, alice, image_id, bob_image, server = fresh
    with session_scope(ws.database_url) as session:
        sha = session.get(Upload, bob_image).sha256
        assert session.get(Upload, image_id).sha256 == sha  # the same bytes
        session.get(Result, alice.result_id).image_sha256 = sha
    with client(server, BOB) as c:
        view = c.get(f"/api/images/{bob_image}").json()
    assert view["proposals"] == [] and view["suggested"] == []
    with client(server) as c:
        assert len(c.get(f"/api/images/{image_id}").json()["proposals"]) == len(alice.instances)


@pytest.mark.parametrize(("who", "status", "reason"), callers(not_yours=404))
def test_only_alice_reaches_her_image(labelled, who, status, reason) -> None:
    ws, _, image_id, _, server = labelled
    c = caller_client(server, ws, who)
    before = stored_counts(ws.database_url)
    body = {"crops": [[0, 0, 50, 50]], "objects": [{"label": "p", "points": [[10, 10], [20, 10], [20, 20]]}]}
    with c:
        answers = [
            c.get(f"/api/images/{image_id}"),
            c.get(f"/api/images/{image_id}/image"),
            c.post(f"/api/images/{image_id}/propose", json={"x": 30, "y": 45}),
            c.post(f"/api/images/{image_id}/labels", json=body),
        ]
        if who in ("nobody", "forged", "expired"):  # her list: any valid caller has one
            answers.append(c.get("/api/images"))
    assert_refused(answers, status, reason)
    assert stored_counts(ws.database_url) == before


def test_her_image_list_and_ids_that_are_no_image_of_hers(labelled) -> None:
    ws, alice, image_id, bob_image, server = labelled
    with client(server) as c:
        listed = c.get("/api/images").json()["images"]
        assert [i["id"] for i in listed] == [image_id]
        for other in (bob_image, alice.training_upload_id, 999_999):  # Bob's, a LabelMe upload, none
            answer = c.get(f"/api/images/{other}")
            assert answer.status_code == 404
            assert answer.json()["error"] == "This image is not yours (or no longer exists)."


SQUARE = [[10, 10], [20, 10], [20, 20], [10, 20]]


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("propose", b"{not json", "not valid JSON"),
        ("propose", {"x": "1", "y": 2}, "finite numbers"),
        ("propose", [1, 2], "must be a JSON object"),
        ("labels", {"crops": []}, "must be a JSON object"),
        ("labels", {"crops": [[1, 2, 3]], "objects": []}, "crop #1 must be"),
        ("labels", {"crops": "all", "objects": []}, "crops must be a list"),
        ("labels", {"crops": [[0, 0, 9, 9]] * 51, "objects": []}, "crops must be a list"),
        ("labels", {"objects": [{"label": "crop", "points": SQUARE}]}, "kept for crop rectangles"),
        ("labels", {"objects": [{"points": SQUARE}]}, "no class name"),
        ("labels", {"objects": [{"label": "p", "points": SQUARE[:2]}]}, "at least 3 points"),
        # the LabelMe validator's own findings, as for a file sent in the chat
        ("labels", {"objects": [{"label": "p", "points": [[10, 10], [20, 20], [30, 30]]}]}, "zero area"),
        ("labels", {"objects": [{"label": "p", "points": [[500, 500], [520, 500], [520, 520]]}]},
         "outside the 320x240"),
    ],
)
def test_bad_bodies_are_refused_and_nothing_is_stored(labelled, path, body, reason) -> None:
    ws, _, image_id, _, server = labelled
    before = stored_counts(ws.database_url)
    with client(server) as c:
        content = body if isinstance(body, bytes) else json.dumps(body)
        answer = c.post(f"/api/images/{image_id}/{path}", content=content,
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["error"]
    assert stored_counts(ws.database_url) == before


def test_review_starts_with_ids_only_where_the_overlay_drew_them(labelled) -> None:
    """168 dense particles on 1024 x 712 (the issue's SEM result): the overlay leaves the ids off,
    so the page starts without them; a sparse result keeps them."""
    import numpy as np

    from annotations.model import AnnotatedImage, Instance
    from tests.webapp_helpers import ellipse
    from web.review import ids_fit

    _, _, _, _, server = labelled
    with client(server) as c:
        assert c.get(f"/api/results/{labelled[1].result_id}").json()["ids_fit"] is True
    dense = [Instance("particle", ellipse(40 + 68 * (k % 14), 40 + 56 * (k // 14), 30, 26), 0.9)
             for k in range(168)]
    image = np.full((712, 1024, 3), 60, np.uint8)
    assert not ids_fit(AnnotatedImage(name="sem.png", image=image, instances=dense))
    sparse = dense[::40]
    assert ids_fit(AnnotatedImage(name="sem.png", image=image, instances=sparse))


def test_the_suggestion_goes_where_the_model_found_something_under_her_threshold(fresh) -> None:
    """A result's stored detections under the threshold (the predict job's "unsure" file) draw a
    suggested crop to where the kept outlines show nothing; a result without the file still opens."""
    from annotations.model import Instance
    from tests.webapp_helpers import ellipse, stored_unsure

    ws, alice, image_id, _, server = fresh
    gap = [(150.0, 168.0), (178.0, 172.0)]  # between the particles' rows and the rods
    unsure = [Instance("particle", ellipse(x, y, 14, 14), 0.5) for x, y in gap]

    def holds(view) -> bool:
        return any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in view["suggested"] for x, y in gap)

    with client(server) as c:
        assert not holds(c.get(f"/api/images/{image_id}").json())
        stored_unsure(ws, alice, unsure)
        view = c.get(f"/api/images/{image_id}").json()
        assert holds(view)
        assert [(o["label"], o["score"]) for o in view["unsure"]] == [("particle", 0.5)] * 2  # for the page
