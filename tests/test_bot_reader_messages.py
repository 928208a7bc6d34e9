"""Through the real bot (the Bot API stand-in): a Russian user gets the LabelMe and image readers'
notes and refusals in Russian, with the plural forms right; an English user's stay English."""

from __future__ import annotations

import json

from storage.models import Upload
from tests.botapi.fixtures import labelme_doc, png_bytes, rows
from tests.botapi.harness import User as TgUser
from tests.botapi.harness import running_bot

ACK = ("Checking", "Проверяю")
BORIS = TgUser(1002, "Boris", "boris", "ru")  # Telegram's language_code picks Russian
ALICE = TgUser(1001, "Alice", "alice", "en")


def _doc(api, user, name: str, data: bytes, contains: str | None = None):
    mark = api.mark()
    api.send_document(user, name, data)
    return api.wait_reply(user.id, mark, contains, skip=ACK)


def _circle_crop_and_border(past_border: int) -> bytes:
    """A crop drawn as a circle round the whole image (shape #1) and 5 particles (#2..#6), the first
    `past_border` of them reaching past the image's right border (it is 64 px wide)."""
    doc = labelme_doc(png_bytes(), n=5)
    doc["shapes"][0].update(shape_type="circle", points=[[32, 32], [32, -4]])
    for k, shape in enumerate(doc["shapes"][1:]):
        x, y = (58, 4 + 12 * k) if k < past_border else (6 + 12 * k, 40)
        shape["points"] = [[x, y], [x + 8, y], [x + 8, y + 8], [x, y + 8]]
    return json.dumps(doc).encode()


def test_a_russian_user_gets_the_readers_notes_and_refusals_in_russian(bs, api) -> None:
    one_point = labelme_doc(png_bytes(), n=1)
    one_point["shapes"][1]["points"] = [[1, 1]]  # its only object: an outline of 1 point
    two_points = labelme_doc(png_bytes(), n=1)
    two_points["shapes"][1]["points"] = [[1, 1], [5, 5]]
    with running_bot(bs):
        # (a) notes: the circle crop, one shape past the border, then two
        reply = _doc(api, BORIS, "circle.json", _circle_crop_and_border(1), "circle.json")
        assert "Кроп #1 нарисован как circle; используется описанный вокруг него прямоугольник." in reply.text
        assert "Фигура #2 выходит за край изображения; она обрезана по нему." in reply.text, reply.text
        assert "5 объектов: particle 5" in reply.text and "примечание:" in reply.text
        reply = _doc(api, BORIS, "two.json", _circle_crop_and_border(2), "two.json")
        two = "2 фигуры (#2, #3) выходят за край изображения; они обрезаны по нему."
        assert two in reply.text, reply.text
        # (b) refusals: the broken file's own message, with the count's form
        reply = _doc(api, BORIS, "one.json", json.dumps(one_point).encode(), "one.json")
        assert ("'one.json': фигура #2 ('particle', polygon) имеет 1 точку, а контуру нужно не меньше 3. "
                "Перерисуйте или удалите её.") in reply.text, reply.text
        reply = _doc(api, BORIS, "pair.json", json.dumps(two_points).encode(), "pair.json")
        assert "имеет 2 точки, а контуру нужно не меньше 3" in reply.text, reply.text
        reply = _doc(api, BORIS, "notes.json", b"{not json", "notes.json")
        assert "'notes.json' — некорректный JSON (строка 1, столбец 2" in reply.text, reply.text
        reply = _doc(api, BORIS, "bad.png", b"\x89PNG\r\n\x1a\nnot really", "bad.png")
        assert "'bad.png' не удаётся декодировать как изображение" in reply.text, reply.text
        # an English user's stay English
        reply = _doc(api, ALICE, "circle.json", _circle_crop_and_border(2), "circle.json")
        assert "note: 2 shapes (#2, #3) reached past the image border; clipped to it." in reply.text
        assert "Crop #1 is a circle; its bounding box is used." in reply.text, reply.text
    stored = {u.original_name: u.summary for u in rows(bs.database_url, Upload)}
    assert set(stored) == {"circle.json", "two.json"}  # the refused files left nothing behind
    notes = stored["two.json"]["notes"]  # kept as messages, to be shown in whoever's language
    assert {"msgid": "Crop #{n} is a {shape}; its bounding box is used.",
            "values": {"n": 1, "shape": "circle"}} in notes
