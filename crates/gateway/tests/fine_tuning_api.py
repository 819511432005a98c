"""The real `openai` Python client against the gateway's files and
fine-tuning APIs (run by fine_tuning_api.rs): a training file's round trip
(upload, retrieve, list, content, delete), line-numbered refusals of bad
training files, a file over the size limit, 404s, and a job refused when no
fine-tuning service offers the model.

Usage: python fine_tuning_api.py BASE_URL API_KEY
Prints `OK <case>` per case; any failed check raises.
"""
import json
import sys

import openai

BASE, API_KEY = sys.argv[1:3]
client = openai.OpenAI(base_url=BASE, api_key=API_KEY, max_retries=0)


def line(*turns):
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in turns]})


GOOD = "\n".join(
    [
        line(("system", "You are terse."), ("user", "Capital of France?"), ("assistant", "Paris.")),
        line(("user", "2+2?"), ("assistant", "4")),
    ]
).encode() + b"\n"


def refused(call, status, *needles):
    """`call` raises the client's error for `status`, naming each needle."""
    try:
        call()
    except openai.APIStatusError as e:
        assert e.status_code == status, (e.status_code, e.message)
        body = e.body if isinstance(e.body, dict) else {}
        for needle in needles:
            assert needle in e.message, (needle, e.message)
        return body
    raise AssertionError(f"expected a {status} refusal")


# A training file's whole life.
f = client.files.create(file=("train.jsonl", GOOD), purpose="fine-tune")
assert f.id.startswith("file-") and f.object == "file", f
assert f.bytes == len(GOOD) and f.filename == "train.jsonl", f
assert f.purpose == "fine-tune" and f.status == "processed", f
got = client.files.retrieve(f.id)
assert got.model_dump() == f.model_dump(), (got, f)
listed = client.files.list()
assert f.id in [x.id for x in listed.data], listed
assert f.id in [x.id for x in client.files.list(purpose="fine-tune").data]
assert f.id not in [x.id for x in client.files.list(purpose="batch").data]
assert client.files.content(f.id).content == GOOD
other = client.files.create(file=("notes.txt", b"not json at all"), purpose="user_data")
newest_first = [x.id for x in client.files.list().data]
assert newest_first.index(other.id) < newest_first.index(f.id), newest_first
print("OK round_trip", flush=True)

# Bad training files name the line and what is wrong with it.
bad_json = GOOD + b"{not json\n"
refused(lambda: client.files.create(file=("t.jsonl", bad_json), purpose="fine-tune"), 400, "line 3:", "JSON")
no_answer = GOOD.replace(b"\n", b"\n" + line(("user", "hi")).encode() + b"\n", 1)
refused(lambda: client.files.create(file=("t.jsonl", no_answer), purpose="fine-tune"), 400, "line 2:", "assistant")
bad_role = (line(("robot", "beep"), ("assistant", "boop")) + "\n").encode()
refused(lambda: client.files.create(file=("t.jsonl", bad_role), purpose="fine-tune"), 400, "line 1:", "robot")
refused(lambda: client.files.create(file=("t.jsonl", b"\n\n"), purpose="fine-tune"), 400, "no example")
refused(lambda: client.files.create(file=("t.jsonl", GOOD), purpose="dreams"), 400, "purpose")
print("OK validation", flush=True)

# Over the 8 MiB limit of the other routes, under the files API's 64 MiB.
big = (line(("user", "x" * 1000), ("assistant", "y" * 1000)) + "\n").encode() * 5000
assert len(big) > 9 * 1024 * 1024
large = client.files.create(file=("big.jsonl", big), purpose="fine-tune")
assert large.bytes == len(big)
client.files.delete(large.id)
huge = b"x" * (64 * 1024 * 1024 + 1)
refused(lambda: client.files.create(file=("huge.bin", huge), purpose="user_data"), 413, "64 MiB")
print("OK size_limit", flush=True)

# Unknown ids are OpenAI's 404s.
refused(lambda: client.files.retrieve("file-000000000000000000000000"), 404, "no file")
refused(lambda: client.files.retrieve("../../etc/passwd"), 404)
refused(lambda: client.files.content("file-zzz"), 404)
refused(lambda: client.files.delete("file-000000000000000000000000"), 404)
refused(lambda: client.fine_tuning.jobs.retrieve("ftjob-" + "0" * 64), 404, "no fine-tuning job")
refused(lambda: client.fine_tuning.jobs.retrieve("ftjob-abc"), 404)
refused(lambda: client.fine_tuning.jobs.list_events("ftjob-" + "1" * 64), 404)
refused(lambda: client.fine_tuning.jobs.checkpoints.list("ftjob-" + "1" * 64), 404)
refused(lambda: client.fine_tuning.jobs.cancel("ftjob-" + "1" * 64), 404)
print("OK not_found", flush=True)

# Jobs: refused with OpenAI's invalid_request_error, saying why.
body = refused(
    lambda: client.fine_tuning.jobs.create(model="no-such-model", training_file=f.id),
    400,
    "no fine-tuning service offers model",
    "no-such-model",
)
assert body.get("type") == "invalid_request_error" and body.get("param") == "model", body
refused(
    lambda: client.fine_tuning.jobs.create(model="m", training_file="file-000000000000000000000000"),
    400,
    "not an uploaded file",
)
refused(lambda: client.fine_tuning.jobs.create(model="m", training_file=other.id), 400, "purpose")
refused(
    lambda: client.fine_tuning.jobs.create(model="m", training_file=f.id, hyperparameters={"n_epochs": 0}),
    400,
    "n_epochs",
)
refused(
    lambda: client.fine_tuning.jobs.create(
        model="m", training_file=f.id, method={"type": "dpo", "dpo": {}}
    ),
    400,
    "supervised",
)
refused(lambda: client.fine_tuning.jobs.create(model="m", training_file=f.id, suffix="a/b"), 400, "suffix")
jobs = client.fine_tuning.jobs.list()
assert jobs.data == [] and jobs.has_more is False, jobs
print("OK jobs_refused", flush=True)

# Deleting a file removes it.
gone = client.files.delete(f.id)
assert gone.id == f.id and gone.deleted is True and gone.object == "file", gone
refused(lambda: client.files.retrieve(f.id), 404)
assert f.id not in [x.id for x in client.files.list().data]
print("OK delete", flush=True)
