"""Runs a pool of looping tasks until SIGTERM; prints the report (run by the tests)."""

import os
import sys

import runtime


class Worker(runtime.Task):
    def run(self):
        print(f"started|{self.worker.id}|{os.getpid()}", flush=True)
        while not self.wait_stopping(5):
            pass
        print(f"drained|{self.worker.id}", flush=True)


if __name__ == "__main__":
    report = runtime.Pool(Worker, workers=2, backend=sys.argv[1], stop_timeout=20).run()
    print(f"report|{report.completed}|{report.unfinished}|{report.stopped}", flush=True)
