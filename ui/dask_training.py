"""Training on a Dask cluster, for a class that outgrows one server.

With DIGITLAB_SCHEDULER=tcp://host:8786 each run is a task on the cluster's workers instead of
a process forked from the server. Everything else stays as it is locally (ui/training.py): the
same trainer loop (`run_trainer`) sends the same messages (batch events a few times a second,
the weights after an epoch at most once a second, and at the end), here through a
`distributed.Queue`; Pause and
Stop are `distributed.Event`s the worker reads every 0.1 s. The dataset is scattered to the
cluster once per dataset (not once per run), the network travels as the model file's arrays
(engine.persistence), and the scheduler queues runs while every worker is busy (one thread
each: one run a worker).

A worker that dies mid-run is reported ("the Dask worker running it was lost"), the network
keeping its last finished epoch; the scheduler would retry the task elsewhere from the start,
so a second start of the same run is refused. A task whose server has gone (its queue is no
longer read) stops by itself.
"""
import collections
import os
import threading
import time
import uuid

FLAG_SECONDS = 0.1      # how often a worker asks the scheduler about Pause and Stop
UNREAD_LIMIT = 300      # bundles the server has not read: it has gone, the task stops
CONNECT_SECONDS = 5
# The weights come back after an epoch at most this often (and at the end): through the
# scheduler, a small network's every epoch (0.03 s on the sample) would double the run's time.
WEIGHTS_SECONDS = 1.0


class Unreachable(Exception):
    """The scheduler named by DIGITLAB_SCHEDULER cannot be reached."""


def scheduler_address():
    """DIGITLAB_SCHEDULER, or None (train on this server)."""
    return os.environ.get("DIGITLAB_SCHEDULER") or None


_clients, _clients_lock = {}, threading.Lock()


def place(address=None):
    """The cluster at `address` (default DIGITLAB_SCHEDULER) as a place to train; Unreachable
    with the reason when it cannot be reached."""
    address = address or scheduler_address()
    with _clients_lock:
        client = _clients.get(address)
        if client is not None and client.status not in ("running", "connecting"):
            client = None  # the scheduler went away: connect again
        if client is None:
            from distributed import Client
            try:
                client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
            except (OSError, TimeoutError, ValueError) as error:
                raise Unreachable(f"The Dask scheduler at {address} cannot be reached ({error}).") from None
            _clients[address] = client
    return DaskPlace(client, address)


class DaskPlace:
    """Where runs train: a Dask cluster (one run a worker thread)."""

    def __init__(self, client, address):
        self.client, self.address = client, address

    def workers(self):
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def waiting_message(self):
        n = self.workers()
        return (f"Waiting for a free Dask worker ({n} worker{'s' * (n != 1)} at {self.address}, one run each); "
                "it starts by itself.")

    def launch(self, job):
        """Submit `job`'s run; returns the RemoteRun the job relays from."""
        from distributed import Event, Queue

        from engine.persistence import network_bytes
        name = f"digitlab-run-{uuid.uuid4().hex}"
        queue = Queue(f"{name}-messages", client=self.client)
        pause, stop = Event(f"{name}-pause", client=self.client), Event(f"{name}-stop", client=self.client)
        data = _scattered(self.client, job.x_train, job.y_train, job.x_test, job.y_test)
        future = self.client.submit(train_on_worker, queue.name, pause.name, stop.name,
                                    network_bytes(job.network, job.optimizer), *data, job.config,
                                    key=name, pure=False, retries=0)
        return RemoteRun(queue, pause, stop, future)


_scatters, _scatters_lock = {}, threading.Lock()


def _scattered(client, *arrays):
    """The dataset's arrays on the cluster, sent once per client and dataset (the futures are
    kept, so the cluster keeps the data for the next run)."""
    key = (id(client), *(id(a) for a in arrays))
    with _scatters_lock:
        kept = _scatters.get(key)
        if kept is None:
            futures = client.scatter(list(arrays), broadcast=False, hash=True)
            kept = _scatters[key] = (arrays, futures)  # the arrays too: their ids stay theirs
        return kept[1]


class RemoteRun:
    """The server's end of a run on the cluster: read like a pipe, watched like a process."""

    def __init__(self, queue, pause, stop, future):
        self.queue, self.pause_flag, self.stop_flag, self.future = queue, pause, stop, future
        self._waiting = collections.deque()  # fetched, not yet read
        self.lost = None  # why the run cannot go on, once known

    # like the receiving end of a pipe
    def poll(self, timeout=0.0):
        """True when a message is there, looking for up to `timeout` seconds. Fetches whatever
        the queue holds in one call (a blocking get with a timeout would make the scheduler log
        an error at every timeout)."""
        if not self._waiting:
            try:
                self._waiting.extend(self.queue.get(batch=True))
            except OSError:  # the scheduler is gone: the relay finds the run dead
                pass
            if not self._waiting:
                time.sleep(timeout)
        return bool(self._waiting)

    def recv(self):
        if not self.poll(0):
            raise EOFError
        return self._waiting.popleft()

    # like the process
    def is_alive(self):
        return not self.future.done()

    @property
    def exitcode(self):
        return None

    def ended_message(self):
        """Why the run ended without its own last word."""
        if self.lost:
            return self.lost
        error = None
        try:
            error = self.future.exception(timeout=1)
        except Exception as why:  # cancelled, or the scheduler is gone
            error = why
        return (f"The Dask worker running this run was lost ({type(error).__name__}: {error}). The network keeps "
                "the weights of its last finished epoch.")

    def mirror(self, paused, stopped):
        """Pass the page's Pause/Resume/Stop on to the worker."""
        try:
            (self.pause_flag.set if paused else self.pause_flag.clear)()
            if stopped:
                self.stop_flag.set()
        except Exception:  # the scheduler is gone: the relay reports the loss
            pass

    def join(self, timeout=None):
        try:
            self.future.result(timeout=timeout)
        except Exception:
            pass

    def close(self):
        self.mirror(False, True)
        try:
            self.future.release()
        except Exception:
            pass


# --- on the worker ------------------------------------------------------------------------------

class _Flag:
    """A distributed.Event read at most every FLAG_SECONDS (each read asks the scheduler)."""

    def __init__(self, event):
        self.event, self._value, self._read = event, False, 0.0

    def is_set(self):
        now = time.monotonic()
        if now - self._read > FLAG_SECONDS:
            self._read = now
            try:
                self._value = self.event.is_set()
            except Exception:  # the scheduler is gone: nothing more can be reported either
                self._value = True
        return self._value


class _QueueSender:
    """run_trainer's sending end: into the run's queue; broken once the server stops reading."""

    def __init__(self, queue):
        self.queue, self._checked = queue, time.monotonic()

    def send(self, message):
        if time.monotonic() - self._checked > 1.0:
            self._checked = time.monotonic()
            if self.queue.qsize() > UNREAD_LIMIT:
                raise BrokenPipeError("nobody reads this run's messages any more")
        self.queue.put(message)

    def close(self):
        pass


def train_on_worker(queue_name, pause_name, stop_name, model, x_train, y_train, x_test, y_test, config):
    """The task: say where it runs, rebuild the network from its arrays, train with one BLAS
    thread (as locally: the same numbers), sending what a local run sends."""
    from distributed import Event, Queue, get_worker
    from threadpoolctl import threadpool_limits

    from engine.persistence import load_network
    from ui.training import Started, run_trainer
    queue = Queue(queue_name)
    queue.put(Started(get_worker().address))
    network, optimizer, _ = load_network(model)
    with threadpool_limits(limits=1, user_api="blas"):
        run_trainer(_QueueSender(queue), _Flag(Event(pause_name)), _Flag(Event(stop_name)), network, optimizer,
                    x_train, y_train, x_test, y_test, config, send_weights=True, weights_every=WEIGHTS_SECONDS,
                    paint_here=True)  # pictures, not weights, cross the cluster
    return network.epochs_trained
