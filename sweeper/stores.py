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


def is_local_store(uri: str) -> bool:
    """A store only this machine can reach: SQLite, a file store or a plain path."""
    return local_store_path(uri) is not None or uri.startswith("file:") or "://" not in uri


def check_tracking_uri(uri: str) -> str | None:
    """What is wrong with a local store's location (its folder is missing), or None. MLflow itself is
    first reached on another thread once trials run, so a mistake this plain is caught here, up front."""
    store = local_store_path(uri)
    if store is not None and not store.parent.is_dir():
        return f"--tracking-uri: {uri}: the folder {store.parent} does not exist"
    return None


UI_ADDRESS = "http://127.0.0.1:5000"
"""Where `sweeper ui` serves a local store by default."""


def experiment_link(tracking_uri: str, experiment_id: str) -> str:
    """The MLflow UI page of an experiment's runs table in its model-training view (MLflow 3 opens an
    experiment on its GenAI overview unless the link asks for `workflowType=machine_learning`): on the
    tracking server itself, or on `sweeper ui` for a local store."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else UI_ADDRESS
    return f"{base}/#/experiments/{experiment_id}?workflowType=machine_learning"
