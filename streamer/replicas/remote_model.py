"""What a front end knows of a model whose replicas run elsewhere: its spec, from the registry, without weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streamer.audio.windows import Window
from streamer.config import Config
from streamer.errors import ConfigError
from streamer.models.base import Model, ModelSpec
from streamer.models.registry import model_spec
from streamer.notes import WindowNote


class RemoteModel(Model):
    """Stands in for a model in the server's tables (specs, `/v1/models`, health): the windows go to replicas."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def transcribe_windows(self, batch: Sequence[Window], states: Sequence[Any]) -> list[list[WindowNote]]:
        raise TypeError(f"{self.spec.name} runs in model replicas; its windows go through a RemoteEngine")


def remote_models(config: Config, names: Sequence[str]) -> dict[str, Model]:
    """The configured models as their specs; a streaming-native one is a config_error (it stays local)."""
    models: dict[str, Model] = {}
    for name in names:
        spec = model_spec(name, config.model_options(name))
        if spec.streaming:
            raise ConfigError(streaming_refusal(name))
        models[name] = RemoteModel(spec)
    return models


def streaming_refusal(name: str) -> str:
    return (
        f"{name} is a streaming-native model: it keeps state for every stream and runs a block every few tens of "
        'milliseconds, so it stays on the local engine. Use [engine] backend = "local", or its windowed form '
        f"([models.{name}] streaming = false) on replicas"
    )
