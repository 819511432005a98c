"""The real `openai` client against the gateway: one plain and one streamed
chat completion. Prints PLAIN <text> and STREAM <text>."""
import sys

import openai

base_url, model, api_key = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
messages = [{"role": "user", "content": "Name one colour."}]

plain = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)
print("PLAIN", (plain.choices[0].message.content or "").replace("\n", " "), flush=True)
print("USAGE", plain.usage.prompt_tokens, plain.usage.completion_tokens, flush=True)

stream = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0, stream=True)
text = "".join((chunk.choices[0].delta.content or "") for chunk in stream if chunk.choices)
print("STREAM", text.replace("\n", " "), flush=True)

