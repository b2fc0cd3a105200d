"""Pool.run() in the main thread; the signal is taken by another thread (run by the tests).

The kernel may hand a process-directed signal to any thread; pthread_kill() makes that certain here, so the test
does not depend on luck: the main thread must still wake up, run the pool's handler and drain.
"""

import signal
import sys
import threading
import time

import runtime


class Worker(runtime.Task):
    def run(self):
        while not self.wait_stopping(5):
            pass


def signal_from_elsewhere(pool: runtime.Pool, sig: int) -> None:
    deadline = time.monotonic() + 60
    while pool.statistics().running < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    signal.pthread_kill(threading.get_ident(), sig)  # this thread, not the main one, takes it


if __name__ == "__main__":
    pool = runtime.Pool(Worker, workers=2, backend=sys.argv[1], stop_timeout=20)
    sig = signal.Signals[sys.argv[2]]
    threading.Thread(target=signal_from_elsewhere, args=(pool, sig), daemon=True).start()
    report = pool.run()
    print(f"report|{report.completed}|{report.unfinished}|{report.stopped}", flush=True)
