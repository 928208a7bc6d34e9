"""deploy/ stays valid: Compose files against the official Compose-spec schema (check-jsonschema's
vendored copy) plus the stack's own rules, Dockerfiles through hadolint, systemd units through
`systemd-analyze verify`, and .env.example documenting every setting."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.settings import _ENV_NAMES
from tests.services import need_service

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
SEGBOT_BIN = Path(sys.executable).parent / "segbot"


def tool(name: str) -> str:
    """A validator from the dev dependencies; missing is a failure under CI, a skip elsewhere."""
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        need_service(name, "is not installed (dev dependency)")
    return found


def env_example() -> dict[str, str]:
    """Names in .env.example, set or commented out (`# NAME=value`), with their example value."""
    values = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        match = re.match(r"^#?\s?([A-Z][A-Z0-9_]+)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2)
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} with `env` (what `docker compose config` does)."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name, "")
        if op == ":?" and not value:
            raise AssertionError(f"{name} required: {arg}")
        return value if value or op != ":-" else arg

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", one, text)


def load_compose(name: str, env: dict[str, str]) -> dict:
    return yaml.safe_load(interpolate((DEPLOY / name).read_text(), env))  # PyYAML resolves `<<:` merges


FILLED = {**{k: v for k, v in env_example().items() if v}, "POSTGRES_PASSWORD": "pw",
          "DATABASE_URL": "postgresql://segbot:pw@main:5432/segbot", "SEGBOT_BROKER_URL": "redis://main:6379/0",
          "SEGBOT_DATA_MOUNT": "/mnt/segbot-data"}


# Compose


@pytest.mark.parametrize("name", ["compose.yaml", "compose.worker.yaml"])
def test_compose_files_match_the_compose_spec(name: str, tmp_path: Path) -> None:
    checker = tool("check-jsonschema")
    resolved = tmp_path / name
    resolved.write_text(interpolate((DEPLOY / name).read_text(), FILLED))
    for path in (DEPLOY / name, resolved):
        proc = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", str(path)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_catches_mistakes(tmp_path: Path) -> None:
    checker = tool("check-jsonschema")
    broken = (DEPLOY / "compose.yaml").read_text().replace("service_completed_successfully", "service_done")
    (tmp_path / "compose.yaml").write_text(broken)
    proc = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec",
                           str(tmp_path / "compose.yaml")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "service_done" in proc.stdout


def test_compose_stack_rules() -> None:
    compose = load_compose("compose.yaml", FILLED)
    services = compose["services"]
    expected = {"bot", "worker-gpu", "worker-cpu", "postgres", "redis", "telegram-bot-api", "migrate"}
    assert expected <= set(services)
    declared_volumes = set(compose["volumes"])
    for name, service in services.items():
        for target, condition in (service.get("depends_on") or {}).items():
            assert target in services and target != name, (name, target)
            assert condition["condition"] in ("service_healthy", "service_completed_successfully")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith((".", "/")) or source in declared_volumes, (name, source)
        restart = service.get("restart")
        assert restart == ("no" if name == "migrate" else "unless-stopped"), name
    # the one-shot migration everything segbot waits for
    assert services["migrate"]["command"] == ["migrate"]
    for name in ("bot", "worker-gpu", "worker-cpu"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert services[name]["env_file"] == [".env"]
        assert services[name]["environment"]["SEGBOT_BROKER_URL"].startswith("redis://redis:")
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgresql://segbot:pw@postgres:")
    # GPU worker: NVIDIA reservation, both queues, one job at a time; no bot token
    gpu = services["worker-gpu"]
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device["device_ids"] == ["0"]
    assert gpu["command"][:3] == ["worker", "--queues", "train,predict"] and "--concurrency" in gpu["command"]
    assert gpu["environment"]["SEGBOT_DEVICE"] == "cuda" and gpu["environment"]["TELEGRAM_BOT_TOKEN"] == ""
    assert "Dockerfile.cuda" in gpu["build"]["dockerfile"]
    cpu = services["worker-cpu"]
    assert cpu["profiles"] == ["cpu"] and cpu["command"][:3] == ["worker", "--queues", "predict"]
    assert services["telegram-bot-api"]["profiles"] == ["bot-api"]
    # data services
    assert services["postgres"]["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    redis = services["redis"]["command"]
    assert redis[redis.index("--appendonly") + 1] == "yes" and services["redis"]["healthcheck"]
    for name in ("postgres", "redis"):
        for port in services[name].get("ports", []):
            assert port.startswith("127.0.0.1:"), "databases listen on localhost unless told otherwise"


def test_compose_files_hold_no_secret() -> None:
    for name in ("compose.yaml", "compose.worker.yaml"):
        text = (DEPLOY / name).read_text()
        compose = load_compose(name, {k: "SECRET-VALUE" for k in re.findall(r"\$\{([A-Z0-9_]+)", text)})
        for service in compose["services"].values():
            env = service.get("environment") or {}
            assert env.get("TELEGRAM_BOT_TOKEN", "") == "", "the token comes from .env only"
        for line in text.splitlines():
            if re.match(r"^\s*[A-Z_]*(PASSWORD|TOKEN|HASH|SECRET)[A-Z_]*:\s*\S", line):
                value = line.split(":", 1)[1].split(" #")[0].strip()
                assert value in ('""', "''") or value.startswith("${"), line


@pytest.mark.parametrize("name", ["compose.yaml", "compose.worker.yaml"])
def test_a_real_compose_implementation_accepts_the_files(name: str, tmp_path: Path) -> None:
    """Debian's docker-compose (v1.29, installed by deploy/system-packages.sh) resolves merges,
    interpolation and profiles. It predates the top-level `name:`, so that line is left out."""
    compose_v1 = shutil.which("docker-compose")
    if compose_v1 is None:
        need_service("docker-compose (Debian package)", "is not installed (bash deploy/system-packages.sh)")
    text = re.sub(r"^name: .*\n", "", (DEPLOY / name).read_text(), flags=re.M)
    (tmp_path / name).write_text(text)
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in FILLED.items()))
    proc = subprocess.run([compose_v1, "-f", name, "--profile", "cpu", "--profile", "bot-api", "--profile",
                           "monitoring", "config"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    for service in resolved["services"].values():
        if "worker" in service.get("command", [""])[0]:
            assert service["environment"]["TELEGRAM_BOT_TOKEN"] == ""


def test_env_example_values_are_valid_settings(monkeypatch) -> None:
    """Every value .env.example shows, set or commented out, is accepted by load_settings()."""
    from core.settings import load_settings

    for name in set(_ENV_NAMES.values()) | {"BROKER_URL"}:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(DEPLOY / "systemd")  # no .env here
    values = env_example()
    for name in _ENV_NAMES.values():
        monkeypatch.setenv(name, values[name])
    settings = load_settings()
    assert settings.access_mode == "allowlist" and settings.metrics_port == 9100
    # The example's values arrive as written: its data dir, and with DATABASE_URL and
    # SEGBOT_BROKER_URL empty the SQLite database and queue in that dir.
    assert settings.data_dir == Path(values["SEGBOT_DATA_DIR"])
    assert settings.database_url == f"sqlite:///{Path(values['SEGBOT_DATA_DIR']) / 'segbot.db'}"
    assert settings.broker_is_embedded and settings.device == values["SEGBOT_DEVICE"]
    assert settings.base_model == Path(values["SEGBOT_BASE_MODEL"])
    assert settings.coco_weights == Path(values["SEGBOT_COCO_WEIGHTS"])
    loaded = {env: getattr(settings, field) for field, env in _ENV_NAMES.items()}
    numbers = {env: v for env, v in loaded.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    assert len(numbers) >= 12, numbers  # limits, queue timings, the metrics port
    assert {env: float(values[env]) for env in numbers} == numbers


def test_worker_compose_for_a_second_gpu_machine() -> None:
    compose = load_compose("compose.worker.yaml", FILLED)
    [(name, worker)] = compose["services"].items()
    assert worker["volumes"] == ["/mnt/segbot-data:/data"]  # the shared (NFS) store
    assert worker["environment"]["DATABASE_URL"] == FILLED["DATABASE_URL"]
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    with pytest.raises(AssertionError, match="SEGBOT_DATA_MOUNT required"):
        load_compose("compose.worker.yaml", {k: v for k, v in FILLED.items() if k != "SEGBOT_DATA_MOUNT"})


# Settings documentation


def test_env_example_documents_every_setting() -> None:
    documented = env_example()
    missing = sorted(set(_ENV_NAMES.values()) - set(documented))
    assert not missing, f"add to deploy/.env.example: {missing}"
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    for index, line in enumerate(lines):  # each setting has a comment right above it (or a group's)
        if re.match(r"^[A-Z][A-Z0-9_]+=", line):
            assert lines[index - 1].startswith("#") or re.match(r"^[A-Z][A-Z0-9_]+=", lines[index - 1]), line
    for name in ("compose.yaml", "compose.worker.yaml"):
        used = set(re.findall(r"\$\{([A-Z0-9_]+)", (DEPLOY / name).read_text()))
        assert used <= set(documented), f"{name} uses undocumented {sorted(used - set(documented))}"
    assert documented["TELEGRAM_BOT_TOKEN"] == "" and documented["POSTGRES_PASSWORD"] == ""


# Dockerfiles


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfile_lints_clean(name: str) -> None:
    hadolint = tool("hadolint")
    proc = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", str(DEPLOY / name)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_mistakes(tmp_path: Path) -> None:
    hadolint = tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    proc = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "DL3007" in proc.stdout


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfile_structure(name: str) -> None:
    text = (DEPLOY / name).read_text()
    instructions = [line.split(None, 1) for line in text.splitlines()
                    if line and not line.startswith((" ", "#"))]
    froms = [rest for op, rest in instructions if op == "FROM"]
    assert len(froms) >= 2, "multi-stage: build and runtime"
    final = text[text.rindex("\nFROM "):]
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"
    assert re.search(r'^HEALTHCHECK .*\n?.*CMD \["segbot", "health"', final, re.M)
    assert "deploy/install.sh" in text, "the venv is built by the project's installer"
    assert "COPY --from=build" in final
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    for image in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image.split()[0])
        assert ":" in image and not image.endswith(":latest") and re.search(r":\S*\d", image), image
    secret = re.search(r"^(ENV|ARG)\s.*(TOKEN|PASSWORD|SECRET|API_HASH)", text, re.M)
    assert not secret, "no secrets in images"
    ignore = (DEPLOY / f"{name}.dockerignore").read_text().splitlines()
    assert ".env" in ignore and "deploy/.env" in ignore and ".venv/" in ignore
    if name.endswith("cuda"):
        assert re.search(r'TORCH_CUDA_ARCH_LIST="[0-9.;+PTX]+"', text) and "FORCE_CUDA=1" in text
        assert re.search(r"^FROM pytorch/pytorch:\$\{BASE_TAG\}-devel AS build", text, re.M)


# systemd


def _units_for_verify(tmp_path: Path) -> Path:
    """The units with their paths pointed at this checkout, so verify can check every ExecStart."""
    units = tmp_path / "units"
    units.mkdir()
    env_file = tmp_path / "segbot.env"
    env_file.write_text("TELEGRAM_BOT_TOKEN=\n")
    for unit in (DEPLOY / "systemd").iterdir():
        text = unit.read_text().replace("/opt/segbot/.venv/bin/segbot", str(SEGBOT_BIN))
        (units / unit.name).write_text(text.replace("/etc/segbot/segbot.env", str(env_file)))
    return units


def _verify(units: Path, *names: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("systemd-analyze"), "verify", "--man=no", *names], cwd=units,
                          capture_output=True, text=True, timeout=120)


def test_systemd_units_verify(tmp_path: Path) -> None:
    assert SEGBOT_BIN.exists()
    units = _units_for_verify(tmp_path)
    names = sorted(p.name.replace("@.service", "@0.service") for p in units.iterdir())
    assert {"segbot-bot.service", "segbot-worker@0.service", "segbot-clean.timer"} <= set(names)
    proc = _verify(units, *names)
    assert proc.returncode == 0 and proc.stderr.strip() == "" and proc.stdout.strip() == "", proc.stderr


def test_systemd_verify_catches_mistakes(tmp_path: Path) -> None:
    units = _units_for_verify(tmp_path)
    worker = units / "segbot-worker@.service"
    worker.write_text(worker.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    assert "restart specifier, ignoring: sometimes" in _verify(units, "segbot-worker@1.service").stderr
    bot = units / "segbot-bot.service"
    bot.write_text(bot.read_text().replace(str(SEGBOT_BIN), "/nonexistent/segbot"))
    assert _verify(units, "segbot-bot.service").returncode != 0


def test_worker_unit_is_one_per_gpu() -> None:
    text = (DEPLOY / "systemd" / "segbot-worker@.service").read_text()
    assert "Environment=CUDA_VISIBLE_DEVICES=%i" in text and "Restart=on-failure" in text
    assert "--queues train,predict" in text and "Environment=TELEGRAM_BOT_TOKEN=" in text
    bot = (DEPLOY / "systemd" / "segbot-bot.service").read_text()
    assert "Restart=on-failure" in bot and "ExecStartPre=/opt/segbot/.venv/bin/segbot migrate" in bot


def test_readme_names_only_files_that_exist() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for path in set(re.findall(r"deploy/[\w./@-]+\w", readme)) - {"deploy/.env"}:  # the operator's copy
        assert (REPO / path).exists(), path
