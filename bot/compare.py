"""/compare's data: the user's recent result sets (one recognition job = one set) and their
objects' sizes, read back from the stored objects tables (the numbers were measured when the
results were made; nothing is recognised again)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.result_files import read_stored
from measures.compare import SetImage, SizeSet, size_set
from outputs.tables import sizes_from_csv
from storage.files import FileStore
from storage.models import Result

RECENT_SETS = 8  # buttons offered


@dataclass(frozen=True)
class SetRow:
    """One result set as a button shows it."""

    job_id: int
    first_image: str
    n_images: int
    created_at: datetime

    @property
    def label(self) -> str:
        """'#12 sample.png +2, 06.12 14:02': the job, its first image, how many more, when."""
        name = self.first_image if len(self.first_image) <= 24 else self.first_image[:23] + "…"
        more = f" +{self.n_images - 1}" if self.n_images > 1 else ""
        return f"#{self.job_id} {name}{more}, {self.created_at:%d.%m %H:%M}"


def recent_sets(session: Session, user_id: int, limit: int = RECENT_SETS) -> list[SetRow]:
    """The user's newest result sets first."""
    rows = session.execute(
        select(Result.job_id, func.min(Result.image_name), func.count(Result.id), func.max(Result.created_at))
        .where(Result.user_id == user_id)
        .group_by(Result.job_id)
        .order_by(Result.job_id.desc())
        .limit(limit)
    )
    return [SetRow(job, name or "?", n, when) for job, name, n, when in rows]


def load_set(session: Session, store: FileStore, user_id: int, job_id: int) -> SizeSet | None:
    """The set's sizes from its objects tables; None when the set is not this user's (or is gone).
    Raises measures.compare's refusal for a set mixing scaled and unscaled images."""
    results = list(session.scalars(
        select(Result).where(Result.user_id == user_id, Result.job_id == job_id).order_by(Result.id)))
    if not results:
        return None
    images: list[SetImage] = []
    for r in results:
        data = read_stored(store, (r.files or {}).get("csv"))
        if data is not None:
            images.append(sizes_from_csv(data.decode("utf-8")))
    first = results[0].image_name or "?"
    return size_set(f"#{job_id} {first}"[:40], images)


@dataclass(frozen=True)
class Compared:
    """What the chat gets: the text, the picture (PNG bytes) and the table (CSV bytes)."""

    text: str
    picture: bytes
    table: bytes


def compare_jobs(session: Session, store: FileStore, user_id: int, job_a: int, job_b: int,
                 metal: str | None, lang: str) -> Compared | None:
    """Set B (job_b) against set A (job_a), in the user's language; None when a set is gone. Raises
    measures.compare's refusals (scaled vs unscaled, too few particles) as InputErrors."""
    import io

    from measures.compare import compare_sets
    from measures.sizes import find_metal
    from outputs.compare import comparison_chat, comparison_csv, render_comparison

    a, b = load_set(session, store, user_id, job_a), load_set(session, store, user_id, job_b)
    if a is None or b is None:
        return None
    compared = compare_sets(a, b, find_metal(metal))
    buffer = io.BytesIO()
    render_comparison(buffer, compared)
    table = comparison_csv(compared).encode("utf-8")
    return Compared(comparison_chat(compared, lang), buffer.getvalue(), table)
