"""Model replicas in Ray Serve (`[engine] backend = "ray"`, docs/scaling.md).

Front ends keep sessions, windowing and stitching; their windows go to replicas that batch windows from all front
ends and keep nothing between windows. Modules, in the order a window travels:

- remote_model.py: what a front end knows of a model it does not load (its spec, from the registry).
- remote_engine.py: the front end's engine: queues, lag merging, windows in flight, retries, results on the loop.
- wire.py: the window and reply messages (msgpack); memory.py: a stream's model memory as bytes.
- runner.py: what a replica does with a batch, without Ray; deployment.py: the Ray Serve deployment around it.
- launcher.py: `streamer replicas`, which deploys them; process.py starts that command for tests and benchmarks.
"""
