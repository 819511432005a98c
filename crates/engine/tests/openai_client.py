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
# Tools, structured output, logprobs and the extras through the client's
# own parameters (and extra_body), as an agent framework sends them.
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 24}},
                "required": ["city"],
            },
        },
    }
]
weather = [{"role": "user", "content": "What is the weather in Paris?"}]
called = client.chat.completions.create(
    model="SmolLM2-135M-Instruct.Q4_1", messages=weather, tools=tools,
    tool_choice="required", temperature=0, max_tokens=40,
)
call = called.choices[0].message.tool_calls[0]
streamed_args = {}
for chunk in client.chat.completions.create(
    model="SmolLM2-135M-Instruct.Q4_1", messages=weather, tools=tools,
    tool_choice="required", temperature=0, max_tokens=40, stream=True,
):
    for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
        streamed_args[delta.index] = streamed_args.get(delta.index, "") + (
            delta.function.arguments or ""
        )
structured = client.chat.completions.create(
    model="SmolLM2-135M-Instruct.Q4_1",
    messages=[{"role": "user", "content": "Name a color."}],
    response_format={
        "type": "json_schema",
        "json_schema": {
            "name": "color",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}},
                "required": ["color"],
            },
        },
    },
    temperature=0, max_tokens=20, logprobs=True, top_logprobs=2,
    extra_body={"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1},
)
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
            "tool_finish": called.choices[0].finish_reason,
            "tool_name": call.function.name,
            "tool_arguments": json.loads(call.function.arguments),
            "tool_streamed_arguments": json.loads(streamed_args[0]),
            "structured": json.loads(structured.choices[0].message.content),
            "structured_logprobs": len(structured.choices[0].logprobs.content),
            "structured_tokens": structured.usage.completion_tokens,
        }
    )
)
