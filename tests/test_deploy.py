"""The deployment files: docker-compose.yml, the Dockerfile and the systemd units (Docker can't run here, so
they are parsed and checked against the code: services, commands, and that every setting they set exists)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.cli import build_parser
from bot.settings import Settings

REPO = Path(__file__).resolve().parents[1]
# Read by PostgreSQL's image, not by Briefbot.
NOT_OURS = {"POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"}


def known_settings() -> set[str]:
    return {field.validation_alias for field in Settings.model_fields.values() if field.validation_alias}


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_has_postgres_a_worker_and_two_webhook_replicas_sharing_the_data():
    services = compose()["services"]
    assert set(services) == {"postgres", "worker", "bot-1", "bot-2"}
    assert services["postgres"]["image"].startswith("postgres:") and "healthcheck" in services["postgres"]
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["environment"]["BRIEFBOT_WATCH"] == "/inbox"
    data_volume = "briefbot-data:/data"
    for name in ("worker", "bot-1", "bot-2"):
        service = services[name]
        env = service["environment"]
        assert service["build"] == "." and data_volume in service["volumes"], name
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["BRIEFBOT_DATA_DIR"] == "/data"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("bot-1", "bot-2"):
        service = services[name]
        env = service["environment"]
        assert service["command"] == ["run"]
        assert env["WEBHOOK_URL"] and env["WEBHOOK_SECRET"] and env["TELEGRAM_BOT_TOKEN"]
        assert env["BRIEFBOT_INDEX_SNAPSHOTS"] == "follow", "replicas never build the index themselves"
        assert f":{env['BRIEFBOT_OPS_PORT']}/healthz" in " ".join(service["healthcheck"]["test"])
    published = [p.split(":")[-2] for n in ("bot-1", "bot-2") for p in services[n]["ports"]]
    assert len(published) == len(set(published)), "the two replicas publish different host ports"
    assert set(compose()["volumes"]) == {"postgres-data", "briefbot-data"}


def test_every_setting_the_deployment_files_set_exists_and_is_documented():
    settings = known_settings()
    used: set[str] = set()
    for service in compose()["services"].values():
        used |= set(service.get("environment", {}))
    for unit in (REPO / "deploy").glob("*.service"):
        used |= set(re.findall(r"^Environment=([A-Z_]+)=", unit.read_text(encoding="utf-8"), re.M))
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    ours = used - NOT_OURS
    assert ours <= settings, sorted(ours - settings)
    undocumented = sorted(s for s in ours if not re.search(rf"^{s}=", example, re.M))
    assert not undocumented, f".env.example lacks {undocumented}"


def test_dockerfile_installs_cpu_torch_before_the_project():
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    runs = [line for line in lines if line.startswith("RUN ")]
    torch = next(i for i, line in enumerate(runs) if "download.pytorch.org/whl/cpu" in line)
    project = next(i for i, line in enumerate(runs) if re.search(r"pip install \.(\s|$|\[)", line))
    assert torch < project
    assert lines[-2:] == ['ENTRYPOINT ["briefbot"]', 'CMD ["run"]']
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignored and "data" in ignored, "the build context leaves the venv and data out"


def unit(name: str) -> dict[str, list[str]]:
    """A systemd unit's keys (repeatable ones collected), from every section."""
    values: dict[str, list[str]] = {}
    for line in (REPO / "deploy" / name).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_systemd_units_run_the_worker_and_replicas():
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001 - the CLI's commands
    worker, replica = unit("briefbot-worker.service"), unit("briefbot@.service")
    for values, command in ((worker, "worker"), (replica, "run")):
        (exec_start,) = values["ExecStart"]
        assert exec_start.endswith(f"briefbot {command}") and command in commands
        assert values["WantedBy"] == ["multi-user.target"] and values["Restart"] == ["on-failure"]
        assert "/etc/briefbot/briefbot.env" in values["EnvironmentFile"]
    assert "BRIEFBOT_INDEX_SNAPSHOTS=follow" in replica["Environment"]
    assert "/etc/briefbot/replica-%i.env" in replica["EnvironmentFile"]
