"""The rest of the issue's flow with the legacy SDK (``together<2``): cancel, list, a bad file, errors.

Run like ``sample.py`` (``TOGETHER_BASE_URL``, ``TOGETHER_API_KEY``), in a folder holding
``cancel_input.jsonl`` and ``bad_input.jsonl``; argv: the output file id of a finished batch, and a key
that is not valid. The SDK validates every response into its pydantic models (required keys, enums,
datetimes): that is its strict mode. Prints a JSON report for the test.
"""

import json
import sys
import time

from together import Together
from together.error import TogetherException

ENDPOINT = "/v1/chat/completions"
ENDED = ("COMPLETED", "FAILED", "EXPIRED", "CANCELLED")


def wait(client: Together, batch_id: str) -> dict:
    job = client.batches.get_batch(batch_id)
    while job.status not in ENDED:
        time.sleep(0.3)
        job = client.batches.get_batch(batch_id)
    return job.model_dump(mode="json")


def failure(call) -> dict:
    try:
        call()
    except TogetherException as exc:
        return {"type": type(exc).__name__, "status": exc.http_status, "message": str(exc)}
    return {"type": None}


output_file_id, wrong_key = sys.argv[1], sys.argv[2]
client = Together()
report: dict = {}

to_cancel = client.files.upload(file="cancel_input.jsonl", purpose="batch-api")
job = client.batches.create_batch(to_cancel.id, endpoint=ENDPOINT)
report["cancel_first"] = client.batches.cancel_batch(job.id).model_dump(mode="json")
report["cancel_final"] = wait(client, job.id)

bad = client.files.upload(file="bad_input.jsonl", purpose="batch-api")
report["bad"] = wait(client, client.batches.create_batch(bad.id, endpoint=ENDPOINT).id)

report["list"] = [j.model_dump(mode="json") for j in client.batches.list_batches()]
report["files"] = [f.model_dump(mode="json") for f in client.files.list().data or []]
report["output_file"] = client.files.retrieve(output_file_id).model_dump(mode="json")
report["unknown_file"] = failure(lambda: client.batches.create_batch("file-nope", endpoint=ENDPOINT))
report["wrong_endpoint"] = failure(lambda: client.batches.create_batch(bad.id, endpoint="/v1/embeddings"))
report["wrong_key"] = failure(lambda: Together(api_key=wrong_key).batches.list_batches())
print(json.dumps(report))
