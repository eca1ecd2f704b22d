"""Together's launch sample for its Batch API, run by the legacy SDK (``together<2``, in ``.venv-together1``).

Run in a folder holding ``batch_input.jsonl``, with ``TOGETHER_BASE_URL=http://HOST:PORT/together/v1`` and
``TOGETHER_API_KEY`` set: ``Together()`` reads both, so the sample's own lines are unchanged but for two
forced departures, each marked: every ``together<2`` release that has batches (1.5.13 to 1.6.0) declares
``create_batch(self, file_id, endpoint)`` with no default, so the one-argument call raises ``TypeError``
inside the SDK before any request; and the sample checks the status once, so a loop polls until the batch
ends. Prints the final job as JSON for the test.
"""

import json
import time

from together import Together

client = Together()
file_resp = client.files.upload(file="batch_input.jsonl", purpose="batch-api")
batch = client.batches.create_batch(file_resp.id, endpoint="/v1/chat/completions")  # departure 1: endpoint
batch_status = client.batches.get_batch(batch.id)
while batch_status.status not in ("COMPLETED", "FAILED", "EXPIRED", "CANCELLED"):  # departure 2: poll
    time.sleep(0.5)
    batch_status = client.batches.get_batch(batch.id)
if batch_status.status == 'COMPLETED':
    client.files.retrieve_content(id=batch_status.output_file_id, output="batch_output.jsonl")

print(json.dumps({"file": file_resp.model_dump(mode="json"), "job": batch_status.model_dump(mode="json")}))
