"""Wakes the Patroni member that must act next, the moment the leader key changes.

Why: Patroni 3.0's etcd v2 client only watches the leader key when loop_wait leaves a
second or more to wait, so with loop_wait 1 each member notices a released, expired or new
leader key on its next loop, up to a second later: the candidate once, the replica that must
follow it once more, and with strict synchronous mode writes wait for that replica. This
process is the watch: it follows the cluster's keys in etcd (one long poll) and runs a
member's loop at once with a PATCH /config that changes nothing. Patroni still decides
everything; without this process failovers work as before, only slower.

Whom it wakes:
- the leader key is gone (a switchover released it, or it expired): the switchover's
  candidate when the failover key names one, else the synchronous standbys, the members
  allowed to take over (with several, Patroni lets the one with the most WAL win). Any other replica that runs its loop
  while a switchover's key is released sleeps 2 s in Patroni 3.0 ("give a time to somebody
  to take the leader lock") before following anyone, so it is left alone.
- a new leader holds the key: every other member, so that they follow it at once.
- a switchover is requested (the failover key names a candidate while a leader holds the
  key): the members other than the leader and the candidate, so that their loops run now
  and then every loop_wait from now. The leader releases its key about 1.1-1.4 s after the
  request (its stop is checked every second), so their next loop reads the keys before
  the release and the one after finds the new leader; left to their own phase, one in
  twenty switchovers had a loop read the keys in the gap between release and takeover
  and sleep those 2 s.

Usage: python3 patroni_wake.py ETCD_URL[,ETCD_URL...] /service/<scope>
Run by `shopctl up local` as the `patroni-wake` component; one line per wake on stderr.
"""

import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

NO_CHANGE = b'{"postgresql": {}}'
GONE = ("delete", "expire", "compareAndDelete")


def log(message):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    print(f"{stamp} patroni-wake: {message}", file=sys.stderr, flush=True)


def wake(api):
    request = urllib.request.Request(
        api + "/config",
        data=NO_CHANGE,
        method="PATCH",
        headers={"Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(request, timeout=1).close()
    except OSError:
        pass  # a member that is down or frozen has nothing to wake


def wake_all(apis):
    threads = [threading.Thread(target=wake, args=(a,)) for a in apis]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class Cluster:
    """What the keys say: the leader, the synchronous standbys, each member's REST API."""

    def __init__(self, prefix):
        self.prefix = prefix.rstrip("/")
        self.leader = None
        self.sync_standbys = []
        self.candidate = None  # of a switchover in progress (the failover key)
        self.apis = {}

    def load(self, nodes):
        for node in nodes:
            self.apply("get", node)

    def apply(self, action, node):
        """Updates the state; returns the members to wake and why."""
        key = node.get("key", "")
        name = key[len(self.prefix) + 1 :]
        value = node.get("value")
        if name == "leader":
            if action in GONE:
                old, self.leader = self.leader, None
                chosen = [self.candidate] if self.candidate else self.sync_standbys
                standbys = [s for s in chosen if s != old and s in self.apis]
                if action != "get" and standbys:
                    apis = [self.apis[s] for s in standbys]
                    return apis, f"leader key {action} ({old}): {', '.join(standbys)}"
            elif value != self.leader:
                self.leader = value
                others = [a for n, a in sorted(self.apis.items()) if n != value]
                if action != "get":
                    return others, f"new leader {value}: the others"
        elif name == "sync" and value:
            try:
                # Patroni writes several standbys comma-separated.
                names = json.loads(value).get("sync_standby") or ""
                self.sync_standbys = [n.strip() for n in names.split(",") if n.strip()]
            except ValueError:
                pass
        elif name == "failover":
            self.candidate = None
            if action not in GONE and value:
                try:
                    self.candidate = json.loads(value).get("member") or None
                except ValueError:
                    pass
            if action != "get" and self.candidate and self.leader:
                keep = (self.candidate, self.leader)
                others = [a for n, a in sorted(self.apis.items()) if n not in keep]
                if others:
                    return others, f"switchover to {self.candidate} requested: the others"
        elif name.startswith("members/"):
            member = name[len("members/") :]
            if action in GONE:
                self.apis.pop(member, None)
            elif value:
                try:
                    api = json.loads(value).get("api_url", "")
                except ValueError:
                    api = ""
                if api:
                    self.apis[member] = api.rsplit("/patroni", 1)[0]
        return [], ""


def flatten(node):
    for child in node.get("nodes", []):
        if child.get("dir"):
            yield from flatten(child)
        else:
            yield child


def main(argv):
    etcd = [u.rstrip("/") for u in argv[0].split(",")]
    prefix = argv[1]
    at = 0
    index = None
    cluster = Cluster(prefix)
    log(f"watching {prefix} in etcd")
    while True:
        base = f"{etcd[at]}/v2/keys{prefix}"
        try:
            if index is None:
                with urllib.request.urlopen(f"{base}?recursive=true", timeout=3) as r:
                    index = int(r.headers["X-Etcd-Index"]) + 1
                    cluster.load(flatten(json.load(r)["node"]))
            url = f"{base}?recursive=true&wait=true&waitIndex={index}"
            with urllib.request.urlopen(url, timeout=30) as r:
                event = json.load(r)
        except urllib.error.HTTPError as e:
            if e.code == 404:  # the cluster is not initialized yet
                time.sleep(1)
            index = None  # e.g. 400: the event at this index was cleared; start over
            continue
        except (socket.timeout, TimeoutError):
            continue  # nothing changed for 30 s
        except (OSError, ValueError):
            at = (at + 1) % len(etcd)
            index = None
            time.sleep(0.5)
            continue
        node = event.get("node", {})
        index = int(node.get("modifiedIndex", index)) + 1
        apis, why = cluster.apply(event.get("action", ""), node)
        if apis:
            wake_all(apis)
            log(f"{why} woken")


if __name__ == "__main__":
    main(sys.argv[1:])
