"""A script whose tasks, bootstrap and jobs live in __main__ (run as a subprocess by the tests)."""

import sys

import runtime


def init():
    return {"from": "main-bootstrap"}


def cube(x):
    return x**3


def loaded(name):
    return name in sys.modules


class MainTask(runtime.Task):
    def run(self):
        print(f"task-ran|{self.worker.backend}|{self.context['from']}", flush=True)


if __name__ == "__main__":
    backend = sys.argv[1]
    report = runtime.Pool(MainTask, workers=2, backend=backend, bootstrap=init).run()
    print(f"completed={report.completed}", flush=True)
    with runtime.Executor(2, backend=backend, bootstrap=init) as ex:
        print("cubes=" + ",".join(str(v) for v in ex.map(cube, range(5))), flush=True)
        # A script's __main__ travels by reference: nothing loads cloudpickle, here or there.
        in_worker = ex.submit(loaded, "cloudpickle").result()
    print(f"cloudpickle-loaded={loaded('cloudpickle')},{in_worker}", flush=True)
