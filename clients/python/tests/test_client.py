"""The Python client against a real `metagov run` process on loopback.

Run by the Rust suite (tests/live), which sets METAGOV_BIN to the binary
under test; by hand: METAGOV_BIN=target/release/metagov python3 -m unittest
discover -s clients/python/tests
"""

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))

from metagov_client import Client  # noqa: E402
import train_logreg  # noqa: E402

BIN = os.environ.get("METAGOV_BIN", "metagov")
CONFIG = os.path.join(HERE, "..", "examples", "gov.toml")


class Supervisor:
    """A `metagov run` child on a free loopback port."""

    def __init__(self, out_dir):
        self.process = subprocess.Popen(
            [BIN, "run", "--listen", "127.0.0.1:0", "--config", CONFIG, "--out", out_dir],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        found = threading.Event()
        self.url = None

        def watch():
            for line in self.process.stderr:
                match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
                if match and not found.is_set():
                    self.url = match.group(1)
                    found.set()
        threading.Thread(target=watch, daemon=True).start()
        if not found.wait(30):
            self.process.kill()
            raise RuntimeError("metagov run did not start")
        for _ in range(300):
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            threading.Event().wait(0.02)
        raise RuntimeError("metagov run never became ready")

    def decision(self, job):
        with urllib.request.urlopen(self.url + "/v1/jobs/%s/decision" % job, timeout=5) as response:
            return json.loads(response.read())

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.assert_exit(self.process.wait(30))

    def kill(self):
        self.process.kill()
        self.process.wait(30)

    @staticmethod
    def assert_exit(code):
        if code != 0:
            raise AssertionError("metagov run exited with %d" % code)


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="metagov-py-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def test_the_learning_rate_follows_the_supervisor(self):
        supervisor = Supervisor(os.path.join(self.dir, "run"))
        try:
            changes = []
            rates, last = train_logreg.train(Client(supervisor.url), windows=40, log=changes.append)
            final = supervisor.decision("logreg-a")["knobs"]["learning_rate"]
        finally:
            supervisor.stop()
        self.assertTrue(changes, "the rules changed the learning rate")
        self.assertLess(rates[-1], rates[0], "the overshooting rate was cut")
        self.assertEqual(final, last, "the loop runs on the supervisor's current rate")
        applied = sum(1 for a, b in zip(rates + [last], rates[1:] + [last]) if a != b)
        self.assertEqual(applied, len(changes), "every change the loop applied was logged once")

    def test_a_supervisor_that_is_down_never_raises_into_the_training_loop(self):
        client = Client("http://127.0.0.1:9", timeout=0.5)
        with self.assertLogs("metagov_client", level="WARNING") as logs:
            first = client.report("job-x", "d", 1, {"gain_p50": 0.1, "stability_mean": 0.5})
            second = client.report("job-x", "d", 2, {"gain_p50": 0.1, "stability_mean": 0.5})
        self.assertEqual((first.status, second.status), ("unreachable", "unreachable"))
        self.assertEqual(second.knobs, {})
        self.assertEqual(len(logs.records), 1, "it warns once, not every window")

    def test_unanswered_windows_are_sent_again_when_the_supervisor_is_back(self):
        out = os.path.join(self.dir, "resume")
        metrics = {"gain_p50": 0.01, "stability_mean": 0.9}
        supervisor = Supervisor(out)
        client = Client(supervisor.url, timeout=1.0)
        self.assertEqual(client.report("job-y", "d", 1, metrics).status, "accepted")
        knobs = client.report("job-y", "d", 2, metrics).knobs
        supervisor.kill()
        logging.disable(logging.WARNING)
        try:
            kept = client.report("job-y", "d", 3, metrics)
        finally:
            logging.disable(logging.NOTSET)
        self.assertEqual((kept.status, kept.knobs), ("unreachable", knobs), "the last knobs are kept")
        supervisor = Supervisor(out)
        try:
            client.url = supervisor.url
            back = client.report("job-y", "d", 4, metrics)
            self.assertEqual((back.status, back.window), ("accepted", 4))
            self.assertEqual(supervisor.decision("job-y")["window"], 4, "window 3 was sent again first")
            again = client.report("job-y", "d", 3, metrics)
            self.assertEqual(again.status, "duplicate", "window 3 was sent again first; a repeat changes nothing")
        finally:
            supervisor.stop()


if __name__ == "__main__":
    unittest.main()
