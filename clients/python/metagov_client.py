"""The training-job side of metagov: report telemetry, apply decisions.

Standard library only. ``Client(url, token=None).report(job, domain, window,
metrics, params)`` sends one telemetry packet to a running ``metagov run``
and returns a :class:`Decision` holding the job's current knobs.

It never raises into the training loop when the supervisor is down, slow or
overloaded: it keeps the last knobs it had, warns once, and sends the
unanswered windows again on the next call. Retrying is safe because the
supervisor answers an identical repeat of a window with ``duplicate: true``
and changes nothing.
"""

import json
import logging
import urllib.error
import urllib.request

__all__ = ["Client", "Decision"]

log = logging.getLogger("metagov_client")

#: Unanswered packets kept for retry at most; the oldest is dropped (with a
#: warning) beyond it.
PENDING_MAX = 1024


class Decision:
    """What the supervisor answered for one packet (or what the client kept).

    ``knobs``: every knob of the job after the packet (``{}`` before the first
    answer). ``changed``: the knobs this packet changed. ``rules``: the rules
    that fired. ``hint``: a resource hint or ``None``. ``status``: accepted,
    rejected, duplicate, conflict, or ``unreachable`` when the supervisor did
    not answer (then ``knobs`` are the last known ones). ``rejection``:
    ``{"reason", "detail"}`` for a rejected packet.
    """

    def __init__(self, body=None, knobs=None, status=None):
        body = body or {}
        decision = body.get("decision") or {}
        self.status = status or body.get("status", "unreachable")
        self.tick = body.get("tick")
        self.window = body.get("window")
        self.knobs = dict(decision.get("knobs") or knobs or {})
        self.changed = dict(decision.get("changed") or {})
        self.rules = list(decision.get("rules") or [])
        self.rollback = decision.get("rollback")
        self.hint = decision.get("hint")
        self.rejection = body.get("rejection")
        self.durability = body.get("durability")

    @property
    def answered(self):
        """True when the supervisor answered this packet."""
        return self.status != "unreachable"

    def __repr__(self):
        return "Decision(status=%r, knobs=%r, changed=%r)" % (self.status, self.knobs, self.changed)


class Client:
    """A connection to ``metagov run`` at ``url`` (``http://127.0.0.1:7878``).

    ``token``: the bearer token when the supervisor has one. ``timeout``:
    seconds to wait for one answer (an answer comes once the packet is
    recorded, so allow for a disk sync).
    """

    def __init__(self, url="http://127.0.0.1:7878", token=None, timeout=2.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._knobs = {}
        self._pending = []
        self._warned = False

    def report(self, job, domain, window, metrics, params=None, phase=None):
        """Sends one window's telemetry; returns the job's :class:`Decision`.

        Never raises for the supervisor's sake: if it cannot be reached, the
        last knobs are returned with ``status == "unreachable"`` and the
        packet is sent again on the next call.
        """
        packet = {"job": job, "domain": domain, "window": window, "metrics": metrics}
        if params:
            packet["params"] = params
        if phase:
            packet["phase"] = phase
        self._pending.append(packet)
        if len(self._pending) > PENDING_MAX:
            dropped = self._pending.pop(0)
            log.warning("metagov: %d windows unanswered; dropped window %s of %s",
                        PENDING_MAX, dropped["window"], dropped["job"])
        decision = None
        while self._pending:
            body = self._send(self._pending[0])
            if body is None:
                return Decision(knobs=self._knobs.get(job), status="unreachable")
            self._pending.pop(0)
            answer = Decision(body)
            if answer.knobs:
                self._knobs[body.get("job") or job] = answer.knobs
            decision = answer
        return decision

    def _send(self, packet):
        """POSTs one packet; the response body, or ``None`` when unanswered."""
        data = json.dumps(packet, allow_nan=True).encode("utf-8")
        request = urllib.request.Request(self.url + "/v1/telemetry", data=data, method="POST")
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            if error.code == 409:
                # A different body for a window the supervisor already has:
                # this packet is refused, nothing to retry.
                return json.loads(error.read().decode("utf-8"))
            self._warn("HTTP %d from %s" % (error.code, self.url))
            return None
        except (OSError, ValueError) as error:
            self._warn("%s: %s" % (self.url, error))
            return None
        if self._warned:
            log.warning("metagov: supervisor at %s answers again", self.url)
            self._warned = False
        return body

    def _warn(self, why):
        if not self._warned:
            log.warning("metagov: no answer (%s); keeping the last knobs and retrying later", why)
            self._warned = True
