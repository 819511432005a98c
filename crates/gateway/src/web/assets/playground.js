// The playground: sends the prompt to this gateway's /v1/chat/completions
// with stream: true (as any OpenAI client would), shows the deltas as they
// come, then the answer's receipt, found by the request id the answer
// carried (X-ZG-Request-Id) at /receipts/by-request/{id}.
"use strict";

function $(id) { return document.getElementById(id); }

function say(element, text, kind) {
  element.textContent = text;
  element.className = kind || "";
}

// Reads the SSE body, appending each delta to `answer`; returns the usage seen.
async function readStream(response, answer) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let usage = null;
  const handle = (event) => {
    for (const line of event.split("\n")) {
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "" || data === "[DONE]") continue;
      let chunk;
      try { chunk = JSON.parse(data); } catch (e) { continue; }
      const choice = chunk.choices && chunk.choices[0];
      const delta = choice && choice.delta && choice.delta.content;
      if (delta) answer.textContent += delta;
      if (chunk.usage) usage = chunk.usage;
      if (chunk.error) throw new Error(chunk.error.message || "the stream failed");
    }
  };
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      handle(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
  if (buffer.trim() !== "") handle(buffer);
  return usage;
}

// The gateway notes the receipt just after the stream's last byte: ask a few times.
async function findReceipt(requestId) {
  for (let i = 0; i < 20; i++) {
    const response = await fetch("/receipts/by-request/" + encodeURIComponent(requestId), {
      headers: { Accept: "application/json" },
    });
    if (response.ok) return response.json();
    if (response.status !== 404) throw new Error("the receipt lookup answered " + response.status);
    await new Promise((done) => setTimeout(done, 250));
  }
  return null;
}

function showReceipt(receipt, found, usage) {
  receipt.textContent = "";
  receipt.className = "";
  const paid = found.check === "paid";
  if (found.receipt_id !== null && found.receipt_id !== undefined) {
    receipt.dataset.receiptId = String(found.receipt_id);
    const link = document.createElement("a");
    link.href = "/activity";
    link.textContent = "Receipt #" + found.receipt_id;
    receipt.append(link, ": ");
  } else {
    receipt.append("No receipt kept: ");
  }
  const fee = document.createElement("span");
  fee.className = "fee";
  fee.textContent = found.fee;
  const check = document.createElement("span");
  check.className = "check " + (paid ? "ok" : "bad");
  check.textContent = found.check;
  receipt.append(fee, " 0G, ", check);
  if (usage) {
    receipt.append(" (" + (usage.prompt_tokens || 0) + " tokens in, " + (usage.completion_tokens || 0) + " out)");
  }
}

async function send(event) {
  event.preventDefault();
  const button = $("send"), answer = $("answer"), receipt = $("receipt");
  const key = $("api-key").value.trim();
  const maxTokens = parseInt($("max-tokens").value, 10);
  answer.textContent = "";
  delete receipt.dataset.receiptId;
  say(receipt, "");
  button.disabled = true;
  try {
    const headers = { "Content-Type": "application/json" };
    if (key) headers.Authorization = "Bearer " + key;
    const body = {
      model: $("model").value,
      stream: true,
      // The last chunk then carries the usage, with its cost in 0G.
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: $("prompt").value }],
    };
    if (maxTokens > 0) body.max_tokens = maxTokens;
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers,
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const error = await response.json().catch(() => null);
      const message = error && error.error ? error.error.message : response.statusText;
      say(receipt, "Refused (" + response.status + "): " + message, "error");
      return;
    }
    const requestId = response.headers.get("X-ZG-Request-Id");
    const usage = await readStream(response, answer);
    if (!requestId) {
      say(receipt, "The answer carried no request id: its receipt can't be shown here.", "error");
      return;
    }
    say(receipt, "Checking the receipt...", "muted");
    const found = await findReceipt(requestId);
    if (!found) {
      say(receipt, "The receipt of request " + requestId + " was not noted yet: see the activity page.", "error");
      return;
    }
    showReceipt(receipt, found, usage);
  } catch (e) {
    say(receipt, "Failed: " + e.message, "error");
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const form = $("chat");
  if (form) form.addEventListener("submit", send);
});
