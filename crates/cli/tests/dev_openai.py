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

# What agents send, each once: a forced tool call, a strict structured
# output, logprobs, two choices, and the legacy text endpoint.
tools = [{"type": "function", "function": {
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
                   "required": ["city"]}}}]
called = client.chat.completions.create(
    model=chat_model, messages=[{"role": "user", "content": "Weather in Paris?"}],
    tools=tools, tool_choice="required", max_tokens=40, temperature=0)
call = called.choices[0].message.tool_calls[0]
assert called.choices[0].finish_reason == "tool_calls", called
structured = client.chat.completions.create(
    model=chat_model, messages=[{"role": "user", "content": "Pick a color."}],
    response_format={"type": "json_schema", "json_schema": {"name": "c", "strict": True, "schema": {
        "type": "object", "properties": {"color": {"type": "string", "enum": ["red", "blue"]}},
        "required": ["color"]}}},
    max_tokens=64, temperature=0, logprobs=True, top_logprobs=2, n=2)
text = client.completions.create(model=chat_model, prompt="Once upon a time", max_tokens=8)

print(json.dumps({
    "models": models,
    "chat": chat.choices[0].message.content,
    "chat_usage": chat.usage.total_tokens,
    "stream": streamed,
    "embedding_dim": len(embedding.data[0].embedding),
    "tool_call": [call.function.name, json.loads(call.function.arguments)],
    "structured": [json.loads(c.message.content)["color"] for c in structured.choices],
    "logprobs": len(structured.choices[0].logprobs.content),
    "completion": text.choices[0].text,
    "cost": [r.usage.model_extra["cost"] for r in (chat, called, structured, text)],
}))
