"""The real `openai` Python client, sync and async, against the gateway of a
real marketplace (run by openai_surface.rs): tools (plain, streamed, a tool
message answered), both response formats, logprobs, n, the legacy
completions endpoint, the Responses API (plain, tools, schema, streamed), the `provider` routing object, the `models` fallback
array, the cost in every answer's usage, and the errors a client maps.

Usage: python openai_surface.py BASE_URL MODEL APP_KEY SMALL_KEY PROVIDER_A PROVIDER_B
Prints `OK <client> <case>` per case; any failed check raises.
"""
import asyncio
import inspect
import json
import sys

import openai

BASE, MODEL, APP_KEY, SMALL_KEY, PROVIDER_A, PROVIDER_B = sys.argv[1:7]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 24}},
                "required": ["city"],
            },
        },
    }
]
WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
SCHEMA = {
    "type": "object",
    "properties": {
        "color": {"type": "string", "enum": ["red", "green", "blue"]},
        "count": {"type": "integer"},
    },
    "required": ["color", "count"],
    "additionalProperties": False,
}


async def maybe(value):
    """The sync client's result, or the async client's awaited."""
    return await value if inspect.isawaitable(value) else value


async def chunks(stream):
    """Every chunk of a sync or async stream."""
    stream = await maybe(stream)
    if hasattr(stream, "__aiter__"):
        return [c async for c in stream]
    return list(stream)


def paid(usage):
    """The usage carries what the answer cost, in 0G, and its receipt id."""
    extra = usage.model_extra or {}
    assert float(extra["cost"]) > 0, usage
    assert extra["receipt_id"], usage
    return extra["cost"]


async def tools(c, tag):
    r = await maybe(c.chat.completions.create(
        model=MODEL, messages=WEATHER, tools=TOOLS, tool_choice="required",
        temperature=0, max_tokens=40))
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather", call
    assert isinstance(json.loads(call.function.arguments)["city"], str), call
    paid(r.usage)
    # The named function, then the tool's answer sent back.
    named = await maybe(c.chat.completions.create(
        model=MODEL, messages=WEATHER, tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0, max_tokens=40))
    assert named.choices[0].message.tool_calls[0].function.name == "get_weather"
    answered = await maybe(c.chat.completions.create(
        model=MODEL, temperature=0, max_tokens=16, tools=TOOLS, tool_choice="none",
        messages=WEATHER + [
            {"role": "assistant", "tool_calls": [call.model_dump(exclude_none=True)]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
        ]))
    assert answered.choices[0].message.content, answered
    assert not answered.choices[0].message.tool_calls, answered
    print("OK", tag, "tools", flush=True)


async def tools_stream(c, tag):
    args, names, finish, usage = {}, {}, None, None
    for chunk in await chunks(c.chat.completions.create(
            model=MODEL, messages=WEATHER, tools=TOOLS, tool_choice="required",
            temperature=0, max_tokens=40, stream=True,
            stream_options={"include_usage": True})):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                if delta.function.name:
                    names[delta.index] = delta.function.name
                args[delta.index] = args.get(delta.index, "") + (delta.function.arguments or "")
    assert finish == "tool_calls", finish
    assert names[0] == "get_weather", names
    assert isinstance(json.loads(args[0])["city"], str), args
    paid(usage)
    print("OK", tag, "tools_stream", flush=True)


async def formats(c, tag):
    obj = await maybe(c.chat.completions.create(
        model=MODEL, temperature=0, max_tokens=40,
        messages=[{"role": "user", "content": "Describe a cat as JSON."}],
        response_format={"type": "json_object"}))
    text = obj.choices[0].message.content
    # Cut at max_tokens a JSON text is unfinished; ended by itself it parses.
    assert obj.choices[0].finish_reason == "length" or isinstance(json.loads(text), dict), text
    strict = await maybe(c.chat.completions.create(
        model=MODEL, temperature=0, max_tokens=40,
        messages=[{"role": "user", "content": "Name a color and a number."}],
        response_format={"type": "json_schema", "json_schema": {
            "name": "pick", "strict": True, "schema": SCHEMA}}))
    value = json.loads(strict.choices[0].message.content)
    assert value["color"] in ("red", "green", "blue") and isinstance(value["count"], int), value
    assert set(value) == {"color", "count"}, value
    print("OK", tag, "formats", flush=True)


async def logprobs(c, tag):
    r = await maybe(c.chat.completions.create(
        model=MODEL, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3,
        messages=[{"role": "user", "content": "Say hi."}]))
    content = r.choices[0].logprobs.content
    assert content and all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content), content
    streamed = []
    for chunk in await chunks(c.chat.completions.create(
            model=MODEL, temperature=0, max_tokens=8, logprobs=True, top_logprobs=2,
            messages=[{"role": "user", "content": "Say hi."}], stream=True)):
        for choice in chunk.choices:
            if choice.logprobs and choice.logprobs.content:
                streamed.extend(choice.logprobs.content)
    assert streamed and all(len(t.top_logprobs) == 2 for t in streamed), streamed
    print("OK", tag, "logprobs", flush=True)


async def choices(c, tag):
    r = await maybe(c.chat.completions.create(
        model=MODEL, n=2, temperature=0.9, seed=7, max_tokens=8,
        messages=[{"role": "user", "content": "Name an animal."}]))
    assert sorted(ch.index for ch in r.choices) == [0, 1], r.choices
    assert all(ch.message.content for ch in r.choices), r.choices
    assert r.usage.completion_tokens >= 2, r.usage
    paid(r.usage)
    print("OK", tag, "n", flush=True)


async def completions(c, tag):
    r = await maybe(c.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0))
    assert r.choices[0].text, r
    paid(r.usage)
    text, usage = "", None
    for chunk in await chunks(c.completions.create(
            model=MODEL, prompt="Once upon a time", max_tokens=8, temperature=0,
            stream=True, stream_options={"include_usage": True})):
        usage = chunk.usage or usage
        text += "".join(ch.text for ch in chunk.choices)
    assert text == r.choices[0].text, (text, r.choices[0].text)
    paid(usage)
    print("OK", tag, "completions", flush=True)


RESPONSE_TOOLS = [dict(type="function", **TOOLS[0]["function"])]


async def responses(c, tag):
    """The Responses API: text with instructions, a required function call
    and its output sent back as items, a strict schema, and no stored state."""
    r = await maybe(c.responses.create(
        model=MODEL, instructions="Answer in a few words.", input="Say hi.",
        max_output_tokens=16, temperature=0))
    assert r.object == "response" and r.status in ("completed", "incomplete"), r
    assert r.output_text, r
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0, r.usage
    paid(r.usage)
    called = await maybe(c.responses.create(
        model=MODEL, input="What is the weather in Paris?", tools=RESPONSE_TOOLS,
        tool_choice="required", temperature=0, max_output_tokens=40))
    calls = [o for o in called.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather", called.output
    assert isinstance(json.loads(calls[0].arguments)["city"], str), calls[0]
    answered = await maybe(c.responses.create(
        model=MODEL, tools=RESPONSE_TOOLS, tool_choice="none", temperature=0,
        max_output_tokens=16, input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            calls[0].model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": calls[0].call_id,
             "output": "sunny, 21 C"},
        ]))
    assert answered.output_text, answered.output
    picked = await maybe(c.responses.create(
        model=MODEL, input="Name a color and a number.", temperature=0,
        max_output_tokens=40, text={"format": {
            "type": "json_schema", "name": "pick", "strict": True, "schema": SCHEMA}}))
    value = json.loads(picked.output_text)
    assert value["color"] in ("red", "green", "blue") and isinstance(value["count"], int), value
    scored = await maybe(c.responses.create(
        model=MODEL, input="Say hi.", max_output_tokens=8, temperature=0,
        include=["message.output_text.logprobs"], top_logprobs=2))
    tokens = scored.output[0].content[0].logprobs
    assert tokens and all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in tokens), tokens
    e = await expect(openai.BadRequestError, lambda: c.responses.create(
        model=MODEL, input="Hi", previous_response_id=r.id))
    assert "input" in e.message, e.message
    print("OK", tag, "responses", flush=True)


async def responses_stream(c, tag):
    events = await chunks(c.responses.create(
        model=MODEL, input="Say hi.", max_output_tokens=16, temperature=0, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created", kinds
    assert kinds[-1] in ("response.completed", "response.incomplete"), kinds
    assert [e.sequence_number for e in events] == list(range(len(events))), kinds
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = [e for e in events if e.type == "response.output_text.done"]
    assert text and done and done[0].text == text, (text, kinds)
    final = events[-1].response
    assert final.output_text == text, final
    scored = await chunks(c.responses.create(
        model=MODEL, input="Say hi.", max_output_tokens=8, temperature=0, stream=True,
        include=["message.output_text.logprobs"], top_logprobs=2))
    streamed = [t for e in scored if e.type == "response.output_text.delta" for t in e.logprobs]
    assert streamed and all(len(t.top_logprobs) == 2 for t in streamed), streamed
    paid(final.usage)
    events = await chunks(c.responses.create(
        model=MODEL, input="What is the weather in Paris?", tools=RESPONSE_TOOLS,
        tool_choice="required", temperature=0, max_output_tokens=40, stream=True))
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert isinstance(json.loads(args)["city"], str), args
    items = [e.item for e in events if e.type == "response.output_item.done"]
    assert items and items[-1].type == "function_call" and items[-1].arguments == args, items
    print("OK", tag, "responses_stream", flush=True)


async def served_by(c, **extra):
    raw = await maybe(c.chat.completions.with_raw_response.create(
        model=MODEL, max_tokens=4, temperature=0,
        messages=[{"role": "user", "content": "Hi"}], **extra))
    return raw.headers.get("x-zg-provider").lower()


async def routing(c, tag):
    a, b = PROVIDER_A.lower(), PROVIDER_B.lower()
    # A is cheaper, so it comes first unless the request says otherwise.
    assert await served_by(c) == a
    assert await served_by(c, extra_body={"provider": {"order": [b, a]}}) == b
    assert await served_by(c, extra_body={"provider": {"only": [b]}}) == b
    assert await served_by(c, extra_body={"provider": {"ignore": [a], "sort": "latency"}}) == b
    assert await served_by(c, extra_body={"provider": {"sort": "price", "require_parameters": True}}) == a
    # A ceiling under B's prices (0G per million tokens) leaves A only.
    assert await served_by(c, extra_body={"provider": {
        "order": [b], "max_price": {"prompt": 0.0015, "completion": "0.0025"}}}) == a
    print("OK", tag, "routing", flush=True)


async def fallbacks(c, tag):
    assert (await maybe(c.models.retrieve(MODEL))).id == MODEL
    await expect(openai.NotFoundError, lambda: c.models.retrieve("no/such-model"))
    r = await maybe(c.chat.completions.create(
        model="no-such-model", max_tokens=4, temperature=0,
        messages=[{"role": "user", "content": "Hi"}], extra_body={"models": [MODEL]}))
    assert r.choices[0].message.content is not None, r
    paid(r.usage)
    print("OK", tag, "fallbacks", flush=True)


async def expect(error, call):
    try:
        await maybe(call())
    except error as e:
        return e
    raise AssertionError(f"expected {error.__name__}")


async def errors(c, small, nokey, tag):
    hi = [{"role": "user", "content": "Hi"}]
    create = c.chat.completions.create
    e = await expect(openai.BadRequestError, lambda: create(
        model=MODEL, messages=hi, extra_body={"provider": {"sort": "cheapest"}}))
    assert "provider" in e.message, e.message
    e = await expect(openai.BadRequestError, lambda: create(
        model=MODEL, messages=hi, logit_bias={"1": 5}))
    assert "logit_bias" in e.message, e.message
    await expect(openai.BadRequestError, lambda: create(
        model=MODEL, max_tokens=4,
        messages=[{"role": "user", "content": "word " * 6000}]))
    await expect(openai.AuthenticationError, lambda: nokey.chat.completions.create(
        model=MODEL, messages=hi, max_tokens=4))
    await expect(openai.NotFoundError, lambda: create(model="no-such-model", messages=hi))
    # Provider B holds too little of the user's escrow for a long prompt.
    e = await expect(openai.APIStatusError, lambda: create(
        model=MODEL, max_tokens=4, extra_body={"provider": {"only": [PROVIDER_B]}},
        messages=[{"role": "user", "content": "x" * 200_000}]))
    assert e.status_code == 402, (e.status_code, e.message)
    # The small key's limit covers one choice, not eight.
    ok = await maybe(small.chat.completions.create(model=MODEL, messages=hi, max_tokens=64))
    assert ok.choices, ok
    await expect(openai.RateLimitError, lambda: small.chat.completions.create(
        model=MODEL, messages=hi, max_tokens=64, n=8))
    print("OK", tag, "errors", flush=True)


CASES = [tools, tools_stream, formats, logprobs, choices, completions, responses,
         responses_stream, routing, fallbacks]


async def run(make, tag):
    c = make(APP_KEY)
    for case in CASES:
        await case(c, tag)
    await errors(c, make(SMALL_KEY), make("zgk-not-a-key"), tag)


def sync_client(key):
    return openai.OpenAI(base_url=BASE, api_key=key, max_retries=0)


def async_client(key):
    return openai.AsyncOpenAI(base_url=BASE, api_key=key, max_retries=0)


asyncio.run(run(sync_client, "sync"))
asyncio.run(run(async_client, "async"))
