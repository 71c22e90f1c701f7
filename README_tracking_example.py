"""Job tracking: a producer waits for what a worker finished (or failed) its jobs with.

Start a server first (`tubeserver --port 11300`), then run `python README_tracking_example.py`.
"""

import threading

from tubeclient import Client, JobFailed

ADDR = ("127.0.0.1", 11300)


def worker() -> None:
    with Client(ADDR, watch="sums", serializer="msgpack") as c:
        for _ in range(2):
            job = c.reserve(timeout=10)
            numbers = job.body["numbers"]
            if not numbers:
                c.fail(job, {"error": "nothing to add"})
                continue
            c.checkpoint(job, {"added": numbers[:2]})  # a retry would resume from here
            c.finish(job, {"sum": sum(numbers)})


with Client(ADDR, use="sums", serializer="msgpack") as producer:
    ok = producer.put({"numbers": [1, 2, 3, 4]})
    bad = producer.put({"numbers": []})
    thread = threading.Thread(target=worker)
    thread.start()
    print("result:", producer.wait_result(ok, timeout=10))
    try:
        producer.wait_result(bad, timeout=10)
    except JobFailed as e:
        print("failed:", e.reason)
    status = producer.status(ok)
    print("status:", status.state, "after", status.reserves, "reserve;", status.result_bytes,
          "bytes kept until", status.expires)
    thread.join()
