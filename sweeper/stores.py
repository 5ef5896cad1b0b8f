"""Where a sweep's MLflow store is: tracking URIs, read without importing MLflow (the CLI decides the store
before anything heavy is loaded)."""

from __future__ import annotations

import os
from pathlib import Path


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite file `mlflow.db` in the working directory (absolute, so
    it does not depend on any process's working directory)."""
    return absolute(os.environ.get("MLFLOW_TRACKING_URI")) or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def absolute(uri: str | None) -> str | None:  # also the CLI's --tracking-uri callback
    """A `sqlite:///` URI whose path is relative, made absolute against the working directory: MLflow stores
    a run's artifact location from it and cannot express a relative one as a file URI; any other URI as is."""
    store = local_store_path(uri) if uri else None
    return f"sqlite:///{Path.cwd() / store}" if store is not None and not store.is_absolute() else uri


def local_store_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, None for any other store."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


TRACKING_OFF = "none"
"""The --tracking-uri that turns the mirror off: the sweep lives in its folder alone (`sweeper.mirror`)."""


def is_local_store(uri: str) -> bool:
    """A store only this machine can reach: SQLite, a file store or a plain path (not TRACKING_OFF: no store)."""
    return uri != TRACKING_OFF and (local_store_path(uri) is not None or uri.startswith("file:") or "://" not in uri)


def check_tracking_uri(uri: str) -> str | None:
    """What is wrong with a local store's location (its folder is missing), or None. MLflow itself is
    first reached on another thread once trials run, so a mistake this plain is caught here, up front."""
    store = local_store_path(uri)
    if store is not None and not store.parent.is_dir():
        return f"--tracking-uri: {uri}: the folder {store.parent} does not exist"
    return None


UI_ADDRESS = "http://127.0.0.1:5000"
"""Where `sweeper ui` serves a local store by default."""


RUNS_VIEW_KEY = "sweeper"
"""The name of the shared runs-table view each sweep's experiment carries (`tracking.runs_view`)."""


def experiment_link(tracking_uri: str, experiment_id: str, ui: str = UI_ADDRESS) -> str:
    """The MLflow UI page of an experiment's runs table, in its model-training view (MLflow 3 opens an
    experiment on its GenAI overview unless the link asks for `workflowType=machine_learning`) and with the
    columns of the shared view sweeper keeps there (verdicts, statistics, knobs): on the tracking server
    itself, or for a local store on the UI at `ui` (`sweeper ui`'s address). A fresh browser opens it as it
    is; one that saved a view of its own shows the shared one with a banner to leave it."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else ui.rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={RUNS_VIEW_KEY}"


def runs_link(tracking_uri: str, experiment_id: str) -> str:
    """`experiment_link` as sweeper prints it after a sweep and in the report, with `link_hint`."""
    return experiment_link(tracking_uri, experiment_id) + link_hint(tracking_uri)


def link_hint(tracking_uri: str) -> str:
    """What a link into the MLflow UI needs first: `sweeper ui`, for a local store."""
    return "" if tracking_uri.startswith(("http://", "https://")) else " (after `sweeper ui`)"
