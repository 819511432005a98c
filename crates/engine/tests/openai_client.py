"""The real `openai` Python client against the engine (run by openai_client.rs).

Usage: python openai_client.py BASE_URL
Prints one JSON object with what the client saw.
"""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="unused")
messages = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
plain = client.chat.completions.create(
    model="SmolLM2-135M-Instruct.Q4_1", messages=messages, temperature=0, max_tokens=24
)
pieces = []
usage = None
finish = None
for chunk in client.chat.completions.create(
    model="SmolLM2-135M-Instruct.Q4_1",
    messages=messages,
    temperature=0,
    max_tokens=24,
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage is not None:
        usage = chunk.usage.model_dump()
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
emb = client.embeddings.create(model="all-MiniLM-L6-v2", input=["hello world", "a cat"])
models = client.models.list()
print(
    json.dumps(
        {
            "plain": plain.choices[0].message.content,
            "plain_finish": plain.choices[0].finish_reason,
            "plain_usage": plain.usage.model_dump(),
            "streamed": "".join(pieces),
            "stream_finish": finish,
            "stream_usage": usage,
            "stream_chunks": len(pieces),
            "embedding_dims": [len(d.embedding) for d in emb.data],
            "embedding_first": emb.data[0].embedding[0],
            "models": [m.id for m in models.data],
        }
    )
)
