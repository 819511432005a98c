"""A whole fine-tuning job through the gateway with the official `openai`
client: upload, create, follow until it succeeds, its events and
checkpoints, the job listed, the tuned model listed and answering; then a second job
cancelled while it waits or trains. Prints the finished job and the
cancelled one as one JSON line for the Rust test to check on chain.

Usage: fine_tuning_flow.py BASE_URL API_KEY TRAINING_FILE
"""

import json
import sys
import time

from openai import OpenAI

base_url, api_key, training = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=base_url, api_key=api_key or "none")

with open(training, "rb") as f:
    uploaded = client.files.create(file=("capitals.jsonl", f.read()), purpose="fine-tune")
assert uploaded.purpose == "fine-tune" and uploaded.status == "processed", uploaded

job = client.fine_tuning.jobs.create(
    model="SmolLM2-135M-Instruct",
    training_file=uploaded.id,
    suffix="capitals",
    method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
    extra_body={"lora_rank": 4},
)
assert job.object == "fine_tuning.job" and job.training_file == uploaded.id, job
assert job.status in ("validating_files", "queued", "running"), job.status

deadline = time.time() + 900
while True:
    job = client.fine_tuning.jobs.retrieve(job.id)
    if job.status in ("succeeded", "failed", "cancelled"):
        break
    assert time.time() < deadline, f"not done: {job}"
    time.sleep(0.5)
assert job.status == "succeeded", job
assert job.fine_tuned_model.startswith("ft:SmolLM2-135M-Instruct:capitals:"), job.fine_tuned_model
assert job.trained_tokens and job.trained_tokens > 0, job
assert job.finished_at and job.finished_at >= job.created_at, job

events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
created = [e.created_at for e in events]
assert created == sorted(created, reverse=True), "events come newest first"
metrics = [e for e in events if e.type == "metrics"]
assert metrics and all(isinstance(e.data["train_loss"], float) for e in metrics), events

checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
assert checkpoints and checkpoints[0].object == "fine_tuning.job.checkpoint", checkpoints
assert checkpoints[0].step_number >= 1 and checkpoints[0].fine_tuning_job_id == job.id, checkpoints[0]

assert job.id in [j.id for j in client.fine_tuning.jobs.list(limit=10).data]
assert job.fine_tuned_model in [m.id for m in client.models.list().data]

# The tuned model answers through the gateway, plain and streamed.
question = [{"role": "user", "content": "What is the capital of France?"}]
answer = client.chat.completions.create(
    model=job.fine_tuned_model, messages=question, max_tokens=8, temperature=0
)
assert answer.choices[0].message.content, answer
streamed = "".join(
    chunk.choices[0].delta.content or ""
    for chunk in client.chat.completions.create(
        model=job.fine_tuned_model, messages=question, max_tokens=8, temperature=0, stream=True
    )
    if chunk.choices
)
assert streamed == answer.choices[0].message.content, (streamed, answer)

second = client.fine_tuning.jobs.create(
    model="SmolLM2-135M-Instruct",
    training_file=uploaded.id,
    hyperparameters={"n_epochs": 2, "batch_size": 4},
)
client.fine_tuning.jobs.cancel(second.id)
deadline = time.time() + 300
while True:
    second = client.fine_tuning.jobs.retrieve(second.id)
    if second.status in ("succeeded", "failed", "cancelled"):
        break
    assert time.time() < deadline, f"not cancelled: {second}"
    time.sleep(0.5)
assert second.status == "cancelled", second

print(json.dumps({"job": job.model_dump(), "cancelled": second.model_dump()}))
