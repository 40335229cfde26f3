"""Serve a small numpy model over HTTP with distcore Serve, compose it, and call it from Python.

Run from the repository root:

    .venv/bin/python examples/serve_model.py

It starts a local cluster, deploys a preprocessing deployment, a two-replica model
and an HTTP ingress, sends a few requests through the proxy with httpx, streams
a response, prints the status and shuts everything down.
"""

from __future__ import annotations

import httpx
import numpy as np
from starlette.responses import StreamingResponse

import distcore
from distcore import serve

PORT = 8123


@serve.deployment
class Preprocess:
    """Turns raw feature lists into a normalized float32 array."""

    async def __call__(self, features: list[float]) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        return (x - x.mean()) / (x.std() + 1e-6)


@serve.deployment(num_replicas=2, user_config={"temperature": 1.0})
class Classifier:
    """A linear model with a softmax; ``user_config`` changes its temperature without a restart."""

    def __init__(self) -> None:
        self.weights = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
        self.temperature = 1.0

    def reconfigure(self, config: dict) -> None:
        self.temperature = float(config["temperature"])

    async def __call__(self, x: np.ndarray) -> dict:
        logits = x @ self.weights / self.temperature
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return {"class": int(p.argmax()), "probabilities": p.astype(float).round(3).tolist()}


@serve.deployment
class Api:
    """The HTTP ingress: POST a JSON list of 4 features; GET /stream streams server-sent events."""

    def __init__(self, preprocess, classifier) -> None:
        self.preprocess = preprocess
        self.classifier = classifier

    async def __call__(self, request):
        if request.url.path.endswith("/stream"):
            async def events():
                for i in range(3):
                    yield f"data: tick {i}\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        features = await request.json()
        # the preprocess response goes straight into the classifier call
        return await self.classifier.remote(self.preprocess.remote(features))


app = Api.bind(Preprocess.bind(), Classifier.bind())


def main() -> None:
    distcore.init(num_cpus=2)
    serve.start(http_options={"port": PORT})
    handle = serve.run(app, name="classifier", route_prefix="/classify")
    with httpx.Client(base_url=f"http://127.0.0.1:{PORT}", timeout=30) as client:
        for features in ([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]):
            print("POST /classify", features, "->", client.post("/classify", json=features).json())
        print("GET /classify/stream ->", [line for line in client.get("/classify/stream").text.splitlines() if line])
    model = serve.get_deployment_handle("Classifier", app_name="classifier")
    x = np.array([0.5, -0.5, 1.0, -1.0], dtype=np.float32)
    print("handle call ->", model.remote(x).result(timeout_s=30))
    print("app status:", serve.status().applications["classifier"].status, "ingress handle:", handle)
    serve.shutdown()
    distcore.shutdown()


if __name__ == "__main__":
    main()
