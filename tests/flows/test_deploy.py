"""`ghosts serve`'s deployments: the cron schedule is registered, and a frozen event starts a train run."""

from __future__ import annotations

import httpx
import pytest

from curation.catalog.errors import GhostsError
from tests.flows.conftest import wait_for


def _api(path: str, body: dict) -> list[dict]:
    from prefect.settings import get_current_settings

    resp = httpx.post(f"{get_current_settings().api.url}{path}", json=body, timeout=30)
    resp.raise_for_status()
    return resp.json()


def test_serve_options_are_checked_before_anything_runs(tmp_path):
    from flows.deploy import ServeOptions

    with pytest.raises(GhostsError, match="--cron 'every night'"):
        ServeOptions(data=str(tmp_path), cron="every night", tags=["x"]).validate()
    with pytest.raises(GhostsError, match="needs something to bring in"):
        ServeOptions(data=str(tmp_path), cron="0 3 * * *").validate()
    with pytest.raises(GhostsError, match="scheduler's address"):
        ServeOptions(data=str(tmp_path), dask_address="localhost:8786").validate()


def test_schedule_and_train_on_freeze_trigger(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client

    from flows.deploy import ServeOptions, build_deployments
    from flows.events import DATASET_FROZEN, dataset_resource
    from flows.train import TrainSettings

    opts = ServeOptions(
        data=str(tmp_path),
        cron="0 3 * * *",
        timezone="Europe/Paris",
        tags=["halloweenmakeup"],
        limit=50,
        settings=TrainSettings(kimg=100, cfg="paper256"),
    )
    ids = {f"{d.flow_name}/{d.name}": d.apply() for d in build_deployments(opts)}
    assert set(ids) == {
        "scrape-and-align/scheduled",
        "review-gate/manual",
        "freeze/manual",
        "pipeline/manual",
        "explore/manual",
        "train/on-freeze",
    }

    # What the Prefect UI shows: the schedule, with the user's tags as default parameters.
    with get_client(sync_client=True) as client:
        scrape = client.read_deployment(ids["scrape-and-align/scheduled"])
        trainer = client.read_deployment(ids["train/on-freeze"])
    assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in scrape.schedules] == [
        ("0 3 * * *", "Europe/Paris", True)
    ]
    assert scrape.parameters["tags"] == ["halloweenmakeup"] and scrape.parameters["limit"] == 50
    assert scrape.parameters["data"] == str(tmp_path)
    assert (
        trainer.parameters["settings"]["kimg"] == 100 and trainer.parameters["settings"]["cfg"] == "paper256"
    )

    # Freezing emits the event; the server's trigger schedules a train run with the archive from the payload.
    from prefect.events import emit_event

    emit_event(
        DATASET_FROZEN,
        resource=dataset_resource("ghosts", 3),
        payload={
            "archive": "/data/datasets/ghosts/v3/ghosts-v3-256.zip",
            "sha256": "cd" * 32,
            "workspace": str(tmp_path),
            "name": "ghosts",
            "version": 3,
        },
    )
    runs = wait_for(
        lambda: _api(
            "/flow_runs/filter",
            {
                "limit": 10,
                "offset": 0,
                "sort": "ID_DESC",
                "deployments": {"id": {"any_": [str(ids["train/on-freeze"])]}},
            },
        ),
        timeout=60,
        what="the frozen event to start a train run",
    )
    params = runs[0]["parameters"]
    assert params["archive"] == "/data/datasets/ghosts/v3/ghosts-v3-256.zip"
    assert params["sha256"] == "cd" * 32 and params["data"] == str(tmp_path)
    assert params["settings"]["kimg"] == 100  # the deployment's defaults fill in the rest


def test_instagram_concurrency_limit_is_created_once(prefect_api):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from flows.scrape import INSTAGRAM_LIMIT, ensure_instagram_limit

    ensure_instagram_limit()
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(INSTAGRAM_LIMIT).limit == 1
        client.update_global_concurrency_limit(INSTAGRAM_LIMIT, GlobalConcurrencyLimitUpdate(limit=2))
    ensure_instagram_limit()  # a limit someone edited in the UI is left alone
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(INSTAGRAM_LIMIT).limit == 2


def test_prefect_yaml_deploys_the_flows_and_trigger_that_flows_deploy_declares(tmp_path):
    """prefect.yaml (for work pools) and flows/deploy.py (for `ghosts serve`) describe the same deployments:
    the same flows, and the same train-on-freeze trigger."""
    import importlib
    from pathlib import Path

    import yaml

    from flows.deploy import ServeOptions, build_deployments, frozen_trigger

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "prefect.yaml").read_text())
    flows_in_yaml = {}
    for d in spec["deployments"]:
        path, attr = d["entrypoint"].split(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), attr)
        flows_in_yaml[flow.name] = d
    served = build_deployments(ServeOptions(data=str(tmp_path), cron="0 3 * * *", tags=["x"]))
    assert set(flows_in_yaml) == {d.flow_name for d in served}

    assert flows_in_yaml["scrape-and-align"]["schedules"][0]["cron"]
    trigger = frozen_trigger()
    (yaml_trigger,) = flows_in_yaml["train"]["triggers"]
    assert yaml_trigger["type"] == "event" and yaml_trigger["enabled"]
    assert set(yaml_trigger["expect"]) == set(trigger.expect)
    assert yaml_trigger["match"] == trigger.match.model_dump()
    assert yaml_trigger["parameters"] == trigger.parameters
