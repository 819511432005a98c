// The official `openai` Node client against the gateway of a real
// marketplace (run by ../openai_surface.rs): tools (plain and streamed),
// both response formats, logprobs, n, the legacy completions endpoint, the
// Responses API (plain, tools, streamed), the
// `provider` routing object, the `models` fallback array, the cost in every
// answer's usage, and the errors a client maps.
//
// Usage: node openai_surface.mjs BASE_URL MODEL APP_KEY SMALL_KEY PROVIDER_A PROVIDER_B
// Prints `OK node <case>` per case; any failed check throws.
import assert from "node:assert/strict";
import OpenAI from "openai";

const [BASE, MODEL, APP_KEY, SMALL_KEY, PROVIDER_A, PROVIDER_B] = process.argv.slice(2);
const client = (apiKey) => new OpenAI({ baseURL: BASE, apiKey, maxRetries: 0 });
const c = client(APP_KEY);

const TOOLS = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string", maxLength: 24 } },
      required: ["city"],
    },
  },
}];
const WEATHER = [{ role: "user", content: "What is the weather in Paris?" }];
const HI = [{ role: "user", content: "Hi" }];

function paid(usage) {
  assert.ok(Number(usage.cost) > 0, JSON.stringify(usage));
  assert.ok(usage.receipt_id, JSON.stringify(usage));
}

const ok = (name) => console.log(`OK node ${name}`);

async function tools() {
  const r = await c.chat.completions.create({
    model: MODEL, messages: WEATHER, tools: TOOLS, tool_choice: "required",
    temperature: 0, max_tokens: 40,
  });
  const choice = r.choices[0];
  assert.equal(choice.finish_reason, "tool_calls");
  const call = choice.message.tool_calls[0];
  assert.equal(call.function.name, "get_weather");
  assert.equal(typeof JSON.parse(call.function.arguments).city, "string");
  paid(r.usage);
  ok("tools");

  const args = {};
  const names = {};
  let finish = null;
  let usage = null;
  const stream = await c.chat.completions.create({
    model: MODEL, messages: WEATHER, tools: TOOLS, tool_choice: "required",
    temperature: 0, max_tokens: 40, stream: true, stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    usage = chunk.usage ?? usage;
    for (const ch of chunk.choices) {
      finish = ch.finish_reason ?? finish;
      for (const d of ch.delta.tool_calls ?? []) {
        if (d.function?.name) names[d.index] = d.function.name;
        args[d.index] = (args[d.index] ?? "") + (d.function?.arguments ?? "");
      }
    }
  }
  assert.equal(finish, "tool_calls");
  assert.equal(names[0], "get_weather");
  assert.equal(typeof JSON.parse(args[0]).city, "string");
  paid(usage);
  ok("tools_stream");
}

async function formats() {
  const obj = await c.chat.completions.create({
    model: MODEL, temperature: 0, max_tokens: 40,
    messages: [{ role: "user", content: "Describe a cat as JSON." }],
    response_format: { type: "json_object" },
  });
  if (obj.choices[0].finish_reason !== "length") {
    assert.equal(typeof JSON.parse(obj.choices[0].message.content), "object");
  }
  const strict = await c.chat.completions.create({
    model: MODEL, temperature: 0, max_tokens: 40,
    messages: [{ role: "user", content: "Name a color and a number." }],
    response_format: {
      type: "json_schema",
      json_schema: {
        name: "pick", strict: true,
        schema: {
          type: "object",
          properties: {
            color: { type: "string", enum: ["red", "green", "blue"] },
            count: { type: "integer" },
          },
          required: ["color", "count"],
          additionalProperties: false,
        },
      },
    },
  });
  const value = JSON.parse(strict.choices[0].message.content);
  assert.ok(["red", "green", "blue"].includes(value.color), JSON.stringify(value));
  assert.ok(Number.isInteger(value.count), JSON.stringify(value));
  ok("formats");
}

async function logprobs() {
  const r = await c.chat.completions.create({
    model: MODEL, temperature: 0, max_tokens: 8, logprobs: true, top_logprobs: 3,
    messages: [{ role: "user", content: "Say hi." }],
  });
  const content = r.choices[0].logprobs.content;
  assert.ok(content.length > 0);
  assert.ok(content.every((t) => t.top_logprobs.length === 3 && t.logprob <= 0));
  const streamed = [];
  const stream = await c.chat.completions.create({
    model: MODEL, temperature: 0, max_tokens: 8, logprobs: true, top_logprobs: 2,
    messages: [{ role: "user", content: "Say hi." }], stream: true,
  });
  for await (const chunk of stream) {
    for (const ch of chunk.choices) streamed.push(...(ch.logprobs?.content ?? []));
  }
  assert.ok(streamed.length > 0 && streamed.every((t) => t.top_logprobs.length === 2));
  ok("logprobs");
}

async function choices() {
  const r = await c.chat.completions.create({
    model: MODEL, n: 2, temperature: 0.9, seed: 7, max_tokens: 8,
    messages: [{ role: "user", content: "Name an animal." }],
  });
  assert.deepEqual(r.choices.map((ch) => ch.index).sort(), [0, 1]);
  paid(r.usage);
  ok("n");
}

async function completions() {
  const r = await c.completions.create({
    model: MODEL, prompt: "Once upon a time", max_tokens: 8, temperature: 0,
  });
  assert.ok(r.choices[0].text.length > 0);
  paid(r.usage);
  let text = "";
  let usage = null;
  const stream = await c.completions.create({
    model: MODEL, prompt: "Once upon a time", max_tokens: 8, temperature: 0,
    stream: true, stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    usage = chunk.usage ?? usage;
    text += chunk.choices.map((ch) => ch.text).join("");
  }
  assert.equal(text, r.choices[0].text);
  paid(usage);
  ok("completions");
}

const RESPONSE_TOOLS = [{ type: "function", ...TOOLS[0].function }];
const WEATHER_Q = "What is the weather in Paris?";

async function responses() {
  const r = await c.responses.create({
    model: MODEL, instructions: "Answer in a few words.", input: "Say hi.",
    max_output_tokens: 16, temperature: 0,
  });
  assert.equal(r.object, "response");
  assert.ok(r.output_text.length > 0, JSON.stringify(r.output));
  paid(r.usage);
  const called = await c.responses.create({
    model: MODEL, input: WEATHER_Q, tools: RESPONSE_TOOLS, tool_choice: "required",
    temperature: 0, max_output_tokens: 40,
  });
  const call = called.output.find((o) => o.type === "function_call");
  assert.equal(call.name, "get_weather");
  assert.equal(typeof JSON.parse(call.arguments).city, "string");
  const answered = await c.responses.create({
    model: MODEL, tools: RESPONSE_TOOLS, tool_choice: "none", temperature: 0,
    max_output_tokens: 16,
    input: [
      { role: "user", content: WEATHER_Q },
      call,
      { type: "function_call_output", call_id: call.call_id, output: "sunny, 21 C" },
    ],
  });
  assert.ok(answered.output_text.length > 0, JSON.stringify(answered.output));
  ok("responses");

  const stream = await c.responses.create({
    model: MODEL, input: "Say hi.", max_output_tokens: 16, temperature: 0, stream: true,
  });
  const events = [];
  for await (const event of stream) events.push(event);
  assert.equal(events[0].type, "response.created");
  const last = events[events.length - 1];
  assert.ok(["response.completed", "response.incomplete"].includes(last.type), last.type);
  const text = events
    .filter((e) => e.type === "response.output_text.delta")
    .map((e) => e.delta)
    .join("");
  assert.ok(text.length > 0);
  assert.equal(last.response.output_text ?? last.response.output[0].content[0].text, text);
  paid(last.response.usage);
  ok("responses_stream");
}

async function servedBy(extra = {}) {
  const { response } = await c.chat.completions
    .create({ model: MODEL, max_tokens: 4, temperature: 0, messages: HI, ...extra })
    .withResponse();
  return response.headers.get("x-zg-provider").toLowerCase();
}

async function routing() {
  const [a, b] = [PROVIDER_A.toLowerCase(), PROVIDER_B.toLowerCase()];
  assert.equal(await servedBy(), a);
  assert.equal(await servedBy({ provider: { order: [b, a] } }), b);
  assert.equal(await servedBy({ provider: { only: [b] } }), b);
  assert.equal(await servedBy({ provider: { order: [b], allow_fallbacks: false } }), b);
  assert.equal(
    await servedBy({ provider: { order: [b], max_price: { prompt: 0.0015, completion: 0.0025 } } }),
    a,
  );
  ok("routing");
  const r = await c.chat.completions.create({
    model: "no-such-model", models: [MODEL], max_tokens: 4, temperature: 0, messages: HI,
  });
  paid(r.usage);
  ok("fallbacks");
}

async function expectStatus(status, call) {
  try {
    await call();
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.equal(e.status, status, e.message);
    return e;
  }
  assert.fail(`expected ${status}`);
}

async function errors() {
  const create = (body) => c.chat.completions.create({ model: MODEL, messages: HI, ...body });
  let e = await expectStatus(400, () => create({ provider: { sort: "cheapest" } }));
  assert.match(e.message, /provider/);
  e = await expectStatus(400, () => create({ logit_bias: { 1: 5 } }));
  assert.match(e.message, /logit_bias/);
  await expectStatus(400, () => create({
    max_tokens: 4, messages: [{ role: "user", content: "word ".repeat(6000) }],
  }));
  await expectStatus(401, () => client("zgk-not-a-key").chat.completions.create({
    model: MODEL, messages: HI, max_tokens: 4,
  }));
  await expectStatus(404, () => create({ model: "no-such-model" }));
  await expectStatus(402, () => create({
    max_tokens: 4, provider: { only: [PROVIDER_B] },
    messages: [{ role: "user", content: "x".repeat(200_000) }],
  }));
  const small = client(SMALL_KEY);
  await small.chat.completions.create({ model: MODEL, messages: HI, max_tokens: 64 });
  await expectStatus(429, () => small.chat.completions.create({
    model: MODEL, messages: HI, max_tokens: 64, n: 8,
  }));
  ok("errors");
}

await tools();
await formats();
await logprobs();
await choices();
await completions();
await responses();
await routing();
await errors();
