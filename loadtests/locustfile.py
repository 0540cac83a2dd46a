"""Locust load test of the digits graph (``graphs/examples/digits.yaml``).

Each simulated user posts one image of scikit-learn's bundled digits (8x8 pixels, values 0..16 as
floats) per request, picked at random, to ``/digits/predict`` (3 of 4 requests) or to the Open
Inference Protocol endpoint ``/digits/v2/models/digits/infer`` (1 of 4), and checks the answer::

    locust -f loadtests/locustfile.py --headless -u 4 -r 4 -t 10s --host http://127.0.0.1:8000

``DIGITS_WAIT_MAX_S`` (default 0.05) sets the most a user waits between requests.
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, task
from sklearn.datasets import load_digits

#: Every image of load_digits as a 64-value row of floats (pixel values 0..16).
ROWS: list[list[float]] = load_digits().data.astype(float).tolist()
GRAPH = "digits"
WAIT_MAX_S = float(os.environ.get("DIGITS_WAIT_MAX_S", "0.05"))


class DigitsUser(HttpUser):
    """Posts random digits to the graph's JSON and OIP endpoints."""

    wait_time = between(0.0, WAIT_MAX_S)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task(3)
    def predict(self) -> None:
        row = self.rng.choice(ROWS)
        with self.client.post(
            f"/{GRAPH}/predict",
            json={"inputs": {"input": [row]}},
            name=f"/{GRAPH}/predict",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
                return
            outputs = resp.json().get("outputs", {})
            if len(outputs.get("label", [])) != 1 or len(outputs.get("probabilities", [])) != 1:
                resp.failure(f"unexpected outputs: {str(outputs)[:200]}")

    @task(1)
    def infer(self) -> None:
        row = self.rng.choice(ROWS)
        body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": row}]}
        url = f"/{GRAPH}/v2/models/{GRAPH}/infer"
        with self.client.post(url, json=body, name=url, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
                return
            names = {o.get("name") for o in resp.json().get("outputs", [])}
            if "probabilities" not in names:
                resp.failure(f"no probabilities in OIP outputs: {sorted(names)}")
