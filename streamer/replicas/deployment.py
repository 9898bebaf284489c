"""A model's replicas as a Ray Serve deployment: each replica loads the model by name with its options and runs the
windows of all front ends in batches (batcher.py says why not `@serve.batch`), over HTTP at `/<model>`.

Ray Serve keeps `count` replicas alive (a replica that dies is replaced) and spreads requests over them; the front
ends retry a window whose replica died (streamer/replicas/remote_engine.py). `app(args)` is the import path a
RayService (KubeRay) names; `streamer replicas` builds the same application from the configuration.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application
from starlette.requests import Request
from starlette.responses import Response

from streamer.config import ReplicasConfig, convert_options
from streamer.models.registry import load_model
from streamer.replicas.batcher import Batcher
from streamer.replicas.runner import WindowRunner
from streamer.replicas.wire import CONTENT_TYPE

# A replica that is being replaced gets this long to finish its batch: front ends retry whatever it drops.
GRACEFUL_SHUTDOWN_S = 2.0


@serve.deployment
class ModelReplica:
    def __init__(self, name: str, options: dict[str, Any], max_batch: int, batch_wait_s: float) -> None:
        # The model runs in a worker thread: the replica's event loop keeps receiving windows for the next batch,
        # and answering Ray's health checks, while it computes.
        self.batcher = Batcher(WindowRunner(load_model(name, options)).run, max_batch, batch_wait_s)

    async def __call__(self, request: Request) -> Response:
        return Response(await self.batcher.submit(await request.body()), media_type=CONTENT_TYPE)


def build_app(name: str, options: dict[str, Any], replicas: ReplicasConfig) -> Application:
    """`replicas.count` replicas of model `name`, batching up to `replicas.max_batch` windows."""
    return ModelReplica.options(
        name=name,
        num_replicas=replicas.count,
        # Room for a full batch waiting while another runs; beyond that Ray Serve queues them before the replica.
        max_ongoing_requests=2 * replicas.max_batch,
        ray_actor_options={"num_cpus": replicas.cpus, "num_gpus": replicas.gpus},
        graceful_shutdown_timeout_s=GRACEFUL_SHUTDOWN_S,
    ).bind(name, options, replicas.max_batch, replicas.batch_wait_ms / 1000.0)


def app(args: dict[str, Any]) -> Application:
    """The application builder a RayService's `import_path: streamer.replicas.deployment:app` names. `args`:
    `model` (a registry name), `options` (its `[model]` table), and any `[replicas]` keys."""
    settings = {k: v for k, v in args.items() if k not in ("model", "options")}
    replicas: ReplicasConfig = convert_options(settings, ReplicasConfig, "replica arguments")
    return build_app(str(args["model"]), dict(args.get("options", {})), replicas)
