"""segbot across machines: a bot host, two worker hosts and a services host, each in its own network
namespace with its own data and cache directory (no shared path), talking only over the test's veth
network: PostgreSQL, Redis and moto's S3 server on `svc`, `segbot run --no-worker` on `bot` against
the Bot API stand-in, `segbot worker` on `gpu-a` and `gpu-b`, each pinned to one core.

Every scenario ends with the invariants, checked in the database, the bucket and the stand-in's
log: one model per succeeded training, one notice per finished job (sent once), every result's files
whole in the bucket, no job left queued or running (tests/netns.py makes the hosts)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storage.db import session_scope
from storage.models import Job, Notice, Result, TrainedModel, User
from tests.botapi.fixtures import rows
from tests.botapi.server import BotApiStandIn
from tests.botapi.server import User as TgUser
from tests.netns import Host, Network
from tests.private_services import PrivatePostgres, PrivateRedis
from tests.services import need_service

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
S3_PORT = 9000
STALE_S = 8.0  # a job whose heartbeat is this old is requeued by a live worker's sweeper
FAST = {
    "SEGBOT_HEARTBEAT_S": "0.5",
    "SEGBOT_STALE_AFTER_S": str(STALE_S),
    "SEGBOT_SWEEP_INTERVAL_S": "1",
    "SEGBOT_CHECKPOINT_EVERY_ITERS": "3",
    "SEGBOT_TRAIN_THREADS": "1",
    "SEGBOT_MAX_JOBS_PER_USER": "20",
    "SEGBOT_DB_RETRY_S": "20",
    "SEGBOT_BASE_MODEL": "none",  # tiny trainings from random weights, as timed in docs/benchmarks.md
}
DROP = ("DATABASE_URL", "SEGBOT_BROKER_URL", "BROKER_URL", "TELEGRAM_BOT_TOKEN", "SEGBOT_BASE_MODEL",
        "SEGBOT_COCO_WEIGHTS", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
        "ALL_PROXY")


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Cluster:
    net: Network
    root: Path
    api: BotApiStandIn
    db_url: str
    env: dict[str, str]  # what every host shares: the services' addresses and the fast timings
    s3: Any  # a boto3 client on the bucket
    bucket: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)  # training jobs whose model its user deleted
    moto: subprocess.Popen[bytes] | None = None

    def host(self, name: str) -> Host:
        return self.net.hosts[name]

    def host_env(self, name: str) -> dict[str, str]:
        data = self.root / name / "data"  # this host's own: no other host sees it
        return {**self.env, "SEGBOT_DATA_DIR": str(data), "SEGBOT_STORE_CACHE_DIR": str(data / "files")}

    def log(self, name: str) -> Path:
        return self.root / name / "log"

    def spawn(self, name: str, *args: str, cpus: str | None = None) -> subprocess.Popen[bytes]:
        (self.root / name).mkdir(exist_ok=True)
        with open(self.log(name), "ab") as out:
            proc = subprocess.Popen(self.host(name).wrap([sys.executable, "-m", "segbot", *args], cpus),
                                    env=self.host_env(name), stdout=out, stderr=subprocess.STDOUT,
                                    cwd=self.root / name, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_worker(self, name: str, cpu: str) -> None:
        mark = self.log(name).stat().st_size if self.log(name).exists() else 0
        proc = self.spawn(name, "worker", cpus=cpu)
        wait_for(lambda: b" ready." in self.log(name).read_bytes()[mark:] or proc.poll() is not None, 120,
                 f"the worker on {name}")
        assert proc.poll() is None, self.tail(name)

    def iptables(self, host: str, *args: str) -> None:
        if shutil.which("iptables") is None:
            need_service("iptables", "not found: the S3 restart scenario closes the new server's port")
        subprocess.run(["ip", "netns", "exec", self.host(host).netns, "iptables", *args], check=True,
                       capture_output=True, timeout=30)

    def tail(self, name: str) -> str:
        return self.log(name).read_text(errors="replace")[-4000:]

    def start_moto(self) -> None:
        svc = self.host("svc")
        server = [str(Path(sys.executable).parent / "moto_server"), "-H", svc.address, "-p", str(S3_PORT)]
        self.moto = subprocess.Popen(svc.wrap(server), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_for(self._s3_answers, 60, "moto's S3 server")

    def _s3_answers(self) -> bool:
        try:
            self.s3.list_buckets()
            return True
        except Exception:  # noqa: BLE001
            return False

    # What the scenarios read

    def jobs(self) -> list[Job]:
        return sorted(rows(self.db_url, Job), key=lambda j: j.id)

    def bucket_keys(self, under: str = "") -> dict[str, int]:
        found: dict[str, int] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=f"segbot/{under}"):
            for item in page.get("Contents", []):
                found[item["Key"].removeprefix("segbot/")] = item["Size"]
        return found

    def all_keys(self) -> list[str]:
        return [f"segbot/{key}" for key in self.bucket_keys()]

    def blob(self, sha256: str) -> bytes:
        key = f"segbot/blobs/{sha256[:2]}/{sha256}"
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    import boto3

    for name in DROP:
        os.environ.pop(name, None)  # the test's own S3 and HTTP clients go straight to the hosts
    root = tmp_path_factory.mktemp("multihost")  # each host's log stays there (pytest keeps 3 runs)
    net = Network().start()
    api = postgres = redis_server = None
    cluster = None
    try:
        svc = net.add("svc")
        for name in ("bot", "gpu-a", "gpu-b"):
            net.add(name)
        postgres = PrivatePostgres(host=svc.address, wrap=svc.wrap)
        postgres.start()
        redis_server = PrivateRedis(host=svc.address, wrap=svc.wrap)
        redis_server.start()
        endpoint = f"http://{svc.address}:{S3_PORT}"
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
        api = BotApiStandIn(host=net.gateway).start()
        bucket = f"segbot-{uuid.uuid4().hex[:8]}"
        env = {k: v for k, v in os.environ.items() if k not in DROP and not k.startswith("SEGBOT_")}
        env.update(FAST, PYTHONPATH=str(REPO), DATABASE_URL=postgres.url,
                   SEGBOT_BROKER_URL=redis_server.url, SEGBOT_STORE_URL=f"s3://{bucket}/segbot",
                   SEGBOT_STORE_ENDPOINT_URL=endpoint, SEGBOT_STORE_ACCESS_KEY="testing",
                   SEGBOT_STORE_SECRET_KEY="testing", SEGBOT_STORE_REGION="us-east-1",
                   TELEGRAM_BOT_TOKEN=api.token, TELEGRAM_API_BASE_URL=api.base_url,
                   TELEGRAM_API_BASE_FILE_URL=api.base_file_url, OMP_NUM_THREADS="1")
        cluster = Cluster(net, root, api, postgres.url, env, s3, bucket)
        cluster.start_moto()
        migrate = cluster.spawn("bot", "migrate")  # on the bot host: the schema and the bucket
        assert migrate.wait(120) == 0, cluster.tail("bot")
        cluster.spawn("bot", "run", "--no-worker")
        cluster.start_worker("gpu-a", "0")
        cluster.start_worker("gpu-b", "1")
        wait_for(lambda: any(c.method == "getMe" for c in api.calls), 60, "the bot starting")
        yield cluster
    finally:
        try:
            net.close()  # every process of every host, the services included
        finally:
            if api is not None:
                api.stop()
            if postgres is not None:
                postgres.close()
            if redis_server is not None:
                redis_server.stop()
            from storage.db import engine_for

            engine_for.cache_clear()
            for data in root.glob("*/data"):  # models and caches: hundreds of MB
                shutil.rmtree(data, ignore_errors=True)


# A user's side of the conversation


def _png(seed: int) -> bytes:
    from PIL import Image

    from trainer.synthetic import synthetic_scene

    scene = synthetic_scene(seed=seed, size=(160, 160), n_particles=10, n_pits=2)
    buffer = io.BytesIO()
    Image.fromarray(scene.image).save(buffer, format="PNG")
    return buffer.getvalue()


def label_and_train(c: Cluster, user: TgUser, iterations: int) -> None:
    """/start, /example sent back as the training data, `iterations` of the tiny preset, Train."""
    api = c.api
    mark = api.mark()
    api.send_text(user, "/start")
    api.wait_reply(user.id, mark, "segbot", timeout=60)
    mark = api.mark()
    api.send_text(user, "/example")
    example = api.wait_reply(user.id, mark, methods=("sendDocument",), timeout=60)
    name, data = example.files["document"]
    mark = api.mark()
    api.send_document(user, name, data)
    summary = api.wait_reply(user.id, mark, "crop", timeout=60)
    with session_scope(c.db_url) as session:
        row = session.scalar(select(User).where(User.telegram_id == user.id))
        assert row is not None
        row.preferences = {**row.preferences, "train_options": {"arch": "tiny", "iterations": iterations,
                                                                "holdout": False}}
    mark = api.mark()
    api.press(user, summary.result, "train:go")
    api.wait_reply(user.id, mark, "queued", timeout=60)


def recognise(c: Cluster, user: TgUser, seed: int) -> None:
    mark = c.api.mark()
    c.api.send_document(user, f"img{seed}.png", _png(seed))
    c.api.wait_reply(user.id, mark, "Recognition job", timeout=60)


def settled(c: Cluster) -> bool:
    """No job queued or running, and every notice sent."""
    busy = [j for j in c.jobs() if j.state in ("queued", "running")]
    return not busy and all(n.sent_at is not None for n in rows(c.db_url, Notice))


def check_invariants(c: Cluster, timeout: float = 300) -> list[Job]:
    wait_for(lambda: settled(c), timeout, "every job finished and every notice sent", every=1.0)
    jobs = c.jobs()
    models = rows(c.db_url, TrainedModel)
    notices = rows(c.db_url, Notice)
    results = rows(c.db_url, Result)
    # one model per succeeded training, none for any other job
    by_job = Counter(m.job_id for m in models)
    for job in jobs:
        expected = 1 if job.kind == "train" and job.state == "succeeded" else 0
        if job.id in c.deleted:  # its user deleted the model since
            expected = 0
        assert by_job.get(job.id, 0) == expected, (job.id, job.kind, job.state)
    # one notice per finished job
    per_job = Counter(n.job_id for n in notices if n.job_id is not None)
    assert all(per_job[j.id] == 1 for j in jobs), per_job
    # the bucket holds exactly the models the rows name, each complete
    dirs = {"/".join(k.split("/")[:3]) for k in c.bucket_keys("models/")}
    assert dirs == {m.path.removeprefix("files/") for m in models if m.path}, dirs
    for name in dirs:
        assert {f"{name}/.complete", f"{name}/weights.pt"} <= set(c.bucket_keys(name + "/"))
    # every result complete: a row per image of each recognition, each of its files whole
    per_predict = Counter(r.job_id for r in results)
    for job in jobs:
        if job.kind == "predict":
            assert per_predict[job.id] == (job.result or {}).get("n_images", 0), (job.id, job.state)
    for result in results:
        for role, sha in result.files.items():
            assert hashlib.sha256(c.blob(sha)).hexdigest() == sha, (result.id, role)
    # what the users saw: one "ready" message per model, one overlay per result
    for user in rows(c.db_url, User):
        ready = [x for x in c.api.calls_to(user.telegram_id, ("sendMessage",)) if "is ready" in x.text]
        done = [n for n in notices if n.user_id == user.id and n.kind == "train_done"]
        assert len(ready) == len(done), [x.text[:80] for x in ready]
        photos = c.api.calls_to(user.telegram_id, ("sendPhoto",))
        assert len(photos) == len([r for r in results if r.user_id == user.id])
    return jobs


ALICE = TgUser(4101, "Alice", "alice")
BOB = TgUser(4102, "Bob", "bob")


def test_two_users_train_and_recognise_over_both_hosts(cluster: Cluster) -> None:
    c = cluster
    label_and_train(c, ALICE, iterations=3)
    label_and_train(c, BOB, iterations=3)
    for user in (ALICE, BOB):
        c.api.wait_reply(user.id, 0, "Model v1 is ready", timeout=300)
    for user, seed in ((ALICE, 1), (BOB, 2), (ALICE, 3), (BOB, 4), (ALICE, 5)):
        recognise(c, user, seed)
    jobs = check_invariants(c)
    assert [j.state for j in jobs] == ["succeeded"] * 7, [(j.id, j.kind, j.state, j.error) for j in jobs]
    hosts = {j.worker.split(":")[0] for j in jobs if j.worker}
    assert hosts == {"gpu-a", "gpu-b"}, hosts
    trainings = [j for j in jobs if j.kind == "train"]
    assert {j.worker.split(":")[0] for j in trainings} == {"gpu-a", "gpu-b"}  # ran side by side


CPUS = {"gpu-a": "0", "gpu-b": "1"}
RECOVERY: dict[str, float] = {}  # seconds, printed at the end of each scenario (docs/benchmarks.md)


def new_job(c: Cluster, before: set[int], kind: str) -> Job:
    return wait_for(lambda: next((j for j in c.jobs() if j.id not in before and j.kind == kind), None), 60,
                    f"the new {kind} job")


def job_row(c: Cluster, job_id: int) -> Job:
    (job,) = rows(c.db_url, Job, id=job_id)
    return job


def first_checkpoint(c: Cluster, job_id: int) -> tuple[str, str]:
    """Wait for the job's first checkpoint in the bucket; (the host running it, the other one)."""
    wait_for(lambda: f"scratch/jobs/{job_id}/checkpoint.pt" in c.bucket_keys(f"scratch/jobs/{job_id}/"), 240,
             "the first checkpoint in the bucket")
    host = (job_row(c, job_id).worker or "").split(":")[0]
    assert host in CPUS, host
    return host, next(h for h in CPUS if h != host)


def training_past_a_checkpoint(c: Cluster, user: TgUser, iterations: int) -> tuple[Job, str, str]:
    """`user` trains; once the first checkpoint is in the bucket: the job, its host, the other host."""
    before = {j.id for j in c.jobs()}
    label_and_train(c, user, iterations=iterations)
    job = new_job(c, before, "train")
    return (job, *first_checkpoint(c, job.id))


def taken_over(c: Cluster, job_id: int, survivor: str) -> bool:
    job = job_row(c, job_id)
    return job.state == "running" and (job.worker or "").startswith(survivor + ":")


def test_a_host_killed_after_its_checkpoint_resumes_on_the_other(cluster: Cluster) -> None:
    c, carol = cluster, TgUser(4103, "Carol", "carol")
    job, victim, survivor = training_past_a_checkpoint(c, carol, iterations=8)
    start = time.monotonic()
    assert c.host(victim).kill_all() > 0  # the worker, its pool process: the machine lost power
    wait_for(lambda: taken_over(c, job.id, survivor), 120, f"{survivor} taking the training over")
    RECOVERY["kill -> claimed"] = time.monotonic() - start
    wait_for(lambda: "resumed" in job_row(c, job.id).stage or job_row(c, job.id).state != "running", 120,
             "the training going on from its checkpoint", every=0.1)
    RECOVERY["kill -> resumed"] = time.monotonic() - start
    check_invariants(c)
    done = job_row(c, job.id)
    assert done.state == "succeeded" and done.attempts == 2 and done.worker.startswith(survivor + ":")
    assert done.result["resumed_at"] >= 3, done.result  # from the bucket's checkpoint, not iteration 0
    assert f"job {job.id} resumed at iteration" in c.log(survivor).read_text()
    c.api.wait_reply(carol.id, 0, "Model v1 is ready", timeout=10)
    print(f"recovery: kill -> claimed by {survivor} {RECOVERY['kill -> claimed']:.1f} s, -> training "
          f"resumed {RECOVERY['kill -> resumed']:.1f} s (stale after {STALE_S:.0f} s)")
    c.start_worker(victim, CPUS[victim])  # back for the next scenarios


def test_a_model_deleted_through_the_bot_is_not_used_from_a_cache(cluster: Cluster) -> None:
    """gpu-b caches Alice's model; she deletes it; a recognition queued before the delete runs on
    gpu-b: refused (the model is gone), and the bucket keeps no copy of it."""
    c = cluster
    (model,) = [m for m in rows(c.db_url, TrainedModel) if m.user_id == _user_id(c, ALICE)]
    pause(c, "gpu-a")  # gpu-a takes nothing for now
    try:
        before = {j.id for j in c.jobs()}
        recognise(c, ALICE, seed=6)
        first = new_job(c, before, "predict")
        wait_for(lambda: job_row(c, first.id).state == "succeeded", 300, "the recognition on gpu-b")
        assert job_row(c, first.id).worker.startswith("gpu-b:")
        cached = c.root / "gpu-b" / "data" / (model.path or "")
        assert (cached / ".complete").is_file()  # gpu-b's own copy of the bundle
        pause(c, "gpu-b")  # busy elsewhere: the next recognition waits in the queue
        try:
            recognise(c, ALICE, seed=7)
            queued = new_job(c, before | {first.id}, "predict")
            mark = c.api.mark()
            c.api.send_text(ALICE, "/models")
            listing = c.api.wait_reply(ALICE.id, mark, f"v{model.version}", timeout=30)
            mark = c.api.mark()
            c.api.press(ALICE, listing.result, f"m:del:{model.id}")
            c.api.wait_reply(ALICE.id, mark, f"Model v{model.version} deleted", timeout=30)
            c.deleted.add(model.job_id or 0)
            assert not c.bucket_keys((model.path or "").removeprefix("files/") + "/")  # gone from the bucket
        finally:
            pause(c, "gpu-b", signal.SIGCONT)
        wait_for(lambda: job_row(c, queued.id).state == "failed", 300, "the recognition of the deleted model")
    finally:
        pause(c, "gpu-a", signal.SIGCONT)
    failed = job_row(c, queued.id)
    assert failed.worker.startswith("gpu-b:"), failed.worker
    assert "model for this job is not available" in (failed.error or "")
    c.api.wait_reply(ALICE.id, mark, "model for this job is not available", timeout=30)
    check_invariants(c)


def pause(c: Cluster, host: str, sig: int = signal.SIGSTOP) -> None:
    for pid in c.host(host).pids():
        os.kill(pid, sig)


def _user_id(c: Cluster, user: TgUser) -> int:
    (row,) = rows(c.db_url, User, telegram_id=user.id)
    return row.id


def test_a_host_cut_off_past_the_stale_time_finishes_the_job_once(cluster: Cluster) -> None:
    c, dave = cluster, TgUser(4104, "Dave", "dave")
    job, victim, survivor = training_past_a_checkpoint(c, dave, iterations=9)
    host = c.host(victim)
    start = time.monotonic()
    host.cut()
    try:
        wait_for(lambda: taken_over(c, job.id, survivor), 120, f"{survivor} taking the training over")
        RECOVERY["cut -> requeued"] = time.monotonic() - start
        time.sleep(2)  # still cut: the victim trains on, unaware
    finally:
        host.reconnect()
        back = time.monotonic()
    check_invariants(c)
    done = job_row(c, job.id)
    assert done.state == "succeeded" and done.worker.startswith(survivor + ":"), (done.state, done.worker)
    # the cut-off host learns that the job is not its own any more and keeps nothing
    wait_for(lambda: f"job {job.id}: not this worker's any more" in c.log(victim).read_text(), 120,
             f"{victim} giving the job up")
    RECOVERY["reconnect -> gave up"] = time.monotonic() - back
    assert f"job {job.id} succeeded" not in c.log(victim).read_text()
    check_invariants(c)
    assert len([m for m in rows(c.db_url, TrainedModel) if m.job_id == job.id]) == 1
    print(f"recovery: cut -> requeued on {survivor} {RECOVERY['cut -> requeued']:.1f} s (stale after "
          f"{STALE_S:.0f} s); {victim} gave the job up {RECOVERY['reconnect -> gave up']:.1f} s after "
          "the reconnect")


def test_the_s3_server_restarted_during_a_result_upload(cluster: Cluster) -> None:
    """moto keeps its objects in memory, so its restart is played as a server that keeps its disk: the
    bucket is copied while nothing writes, and put back into the new server at once."""
    c = cluster
    pause(c, "gpu-a")
    pause(c, "gpu-b")
    try:
        before = {j.id for j in c.jobs()}
        recognise(c, BOB, seed=8)
        job = new_job(c, before, "predict")
        disk = {key: c.s3.get_object(Bucket=c.bucket, Key=key)["Body"].read() for key in c.all_keys()}
    finally:
        pause(c, "gpu-a", signal.SIGCONT)
        pause(c, "gpu-b", signal.SIGCONT)

    def recognising() -> str:
        row = job_row(c, job.id)
        under_way = row.state == "running" and row.stage.startswith("image")
        return (row.worker or "").split(":")[0] if under_way else ""
    host = wait_for(recognising, 240, "the recognition under way", every=0.1)
    mark = c.log(host).stat().st_size
    assert c.moto is not None
    c.moto.kill()  # the server dies; the worker recognises on and meets it dead when it stores the files
    c.moto.wait(10)
    killed = time.monotonic()
    wait_for(lambda: b"unreachable" in c.log(host).read_bytes()[mark:], 120, "the worker meeting it dead")
    # A restarting server takes connections once its data is there: the new one is closed to the
    # hosts (not to this test, which puts the objects back) until then.
    gate = ["INPUT", "-p", "tcp", "--dport", str(S3_PORT), "!", "-s", c.net.gateway, "-j", "REJECT",
            "--reject-with", "tcp-reset"]
    c.iptables("svc", "-A", *gate)
    try:
        c.start_moto()
        c.s3.create_bucket(Bucket=c.bucket)
        for key, body in disk.items():
            c.s3.put_object(Bucket=c.bucket, Key=key, Body=body)
    finally:
        c.iptables("svc", "-D", *gate)
    RECOVERY["S3 away"] = time.monotonic() - killed
    wait_for(lambda: job_row(c, job.id).state not in ("queued", "running"), 240, "the recognition")
    RECOVERY["S3 back -> job done"] = time.monotonic() - killed - RECOVERY["S3 away"]
    done = job_row(c, job.id)
    assert done.state == "succeeded", (done.state, done.error, c.tail(host))
    assert done.worker.startswith(host + ":")
    assert b"unreachable (EndpointConnectionError); put_file again" in c.log(host).read_bytes()[mark:]
    check_invariants(c)  # the result's files are all there, whole
    print(f"recovery: S3 server away {RECOVERY['S3 away']:.1f} s (kill -> back with its objects); the job "
          f"ended {RECOVERY['S3 back -> job done']:.1f} s after it was back")
