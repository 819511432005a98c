"""Drives `zg-serving dev`'s gateway with the real openai client.

Usage: dev_openai.py BASE_URL API_KEY CHAT_MODEL EMBEDDING_MODEL
Prints one JSON object with what it saw.
"""
import json
import sys

from openai import OpenAI

base_url, api_key, chat_model, embedding_model = sys.argv[1:5]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)

models = [m.id for m in client.models.list().data]
assert chat_model in models, f"{chat_model} not in {models}"

chat = client.chat.completions.create(
    model=chat_model,
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    max_tokens=24,
    temperature=0,
)
stream = client.chat.completions.create(
    model=chat_model,
    messages=[{"role": "user", "content": "Name three colors."}],
    max_tokens=24,
    temperature=0,
    stream=True,
)
streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
embedding = client.embeddings.create(model=embedding_model, input=["a cat sat on the mat"])

print(json.dumps({
    "models": models,
    "chat": chat.choices[0].message.content,
    "chat_usage": chat.usage.total_tokens,
    "stream": streamed,
    "embedding_dim": len(embedding.data[0].embedding),
}))
