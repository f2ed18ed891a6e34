"""A real training loop governed by metagov: logistic regression in pure
Python on data it generates, whose learning rate follows the supervisor.

Start the supervisor with this example's config, then the training loop:

    metagov run --config clients/python/examples/gov.toml
    python3 clients/python/examples/train_logreg.py --url http://127.0.0.1:7878

Each window is ten full-batch gradient steps; after each the job reports its
loss, the relative loss decrease (``gain_p50``) and its learning rate, and
applies the learning rate the supervisor answers with. The starting rate is
too large for this data (the loss oscillates), and the config's rules cut it.
Kill the supervisor meanwhile and start it again: the loop keeps its last
rate, warns once, and carries on when the supervisor is back.
"""

import argparse
import math
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from metagov_client import Client  # noqa: E402


def make_data(seed, n=400, dims=5, scale=8.0):
    """Two classes separated by a random hyperplane, features scaled up so
    that large learning rates overshoot."""
    rng = random.Random(seed)
    truth = [rng.gauss(0, 1) for _ in range(dims)]
    xs, ys = [], []
    for _ in range(n):
        x = [scale * rng.gauss(0, 1) for _ in range(dims)]
        margin = sum(w * v for w, v in zip(truth, x)) / scale
        ys.append(1.0 if margin + rng.gauss(0, 0.5) > 0 else 0.0)
        xs.append(x)
    return xs, ys


def loss_and_gradient(weights, xs, ys):
    """Mean logistic loss and its gradient."""
    loss = 0.0
    grad = [0.0] * len(weights)
    for x, y in zip(xs, ys):
        z = sum(w * v for w, v in zip(weights, x))
        p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
        loss += -(y * math.log(max(p, 1e-12)) + (1 - y) * math.log(max(1 - p, 1e-12)))
        for i, v in enumerate(x):
            grad[i] += (p - y) * v
    n = len(xs)
    return loss / n, [g / n for g in grad]


def train(client, job="logreg-a", windows=60, steps_per_window=10, seed=7, log=print):
    """Trains for `windows` windows; returns the learning rate of each window
    and the rate the supervisor answered last."""
    xs, ys = make_data(seed)
    weights = [0.0] * len(xs[0])
    lr = 1.6
    previous, _ = loss_and_gradient(weights, xs, ys)
    rates = []
    for window in range(1, windows + 1):
        started = time.monotonic()
        losses = []
        for _ in range(steps_per_window):
            loss, grad = loss_and_gradient(weights, xs, ys)
            weights = [w - lr * g for w, g in zip(weights, grad)]
            losses.append(loss)
        loss, _ = loss_and_gradient(weights, xs, ys)
        gain = (previous - loss) / previous if previous > 0 else 0.0
        spread = max(losses) - min(losses)
        stability = max(0.0, min(1.0, 1.0 - spread / max(losses)))
        latency_ms = (time.monotonic() - started) * 1000.0
        decision = client.report(
            job, "tabular", window,
            {"gain_p50": gain, "stability_mean": stability, "loss": loss, "latency_ms": latency_ms},
            params={"learning_rate": lr},
        )
        rates.append(lr)
        new_lr = decision.knobs.get("learning_rate", lr)
        if new_lr != lr:
            rules = ", ".join(r["rule"] for r in decision.rules) or decision.rollback or "prior"
            log("window %3d  loss %.4f  learning rate %.3f -> %.3f (%s)" % (window, loss, lr, new_lr, rules))
        lr = new_lr
        previous = loss
    return rates, lr


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7878", help="the supervisor's HTTP address")
    parser.add_argument("--token", default=None, help="bearer token, when the supervisor has one")
    parser.add_argument("--job", default="logreg-a")
    parser.add_argument("--windows", type=int, default=60)
    args = parser.parse_args()
    rates, last = train(Client(args.url, token=args.token), job=args.job, windows=args.windows)
    print("learning rate: %.3f at the start, %.3f at the end" % (rates[0], last))


if __name__ == "__main__":
    main()
