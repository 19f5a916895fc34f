// The Complete tab: the legacy Completions API (POST /v1/completions) for a raw prompt,
// no chat template (a base model's way, or to see what a model continues). The prompt is
// shown with the continuation after it, streamed, each choice of n in its own box, with
// the sidebar's sampling fields (the chat-only ones, response_format, tools and store,
// are not sent), logprobs shaded as in the chat (at most 5 alternatives: the API's
// limit), Stop, errors inline and the usage line.

import { request, sseEvents } from "./api.js";
import { byTestId, el } from "./dom.js";
import { appendTokens } from "./logprobs.js";

// The sidebar's fields the Completions API takes as they are.
const FIELDS = ["temperature", "top_p", "max_tokens", "seed", "n", "stop",
  "top_k", "min_p", "repetition_penalty", "min_tokens"];

/** The Completions request fields of the sidebar's (``params.read()``) fields. */
export function completionFields(fields) {
  const out = {};
  for (const name of FIELDS) if (fields[name] !== undefined) out[name] = fields[name];
  if (fields.logprobs) out.logprobs = Math.min(fields.top_logprobs ?? 0, 5);
  return out;
}

/** A completion's ``logprobs`` (tokens, token_logprobs, top_logprobs) as chat's entries. */
function entries(logprobs) {
  return logprobs.tokens.map((token, i) => ({
    token,
    logprob: logprobs.token_logprobs[i] ?? 0,
    top_logprobs: Object.entries(logprobs.top_logprobs[i] || {}).map(([t, lp]) => ({
      token: t,
      logprob: lp,
    })),
  }));
}

export class Completer {
  constructor({ models, params, root = document }) {
    this.models = models;
    this.params = params;
    this.controller = null;
    this.prompt = byTestId("complete-prompt", root);
    this.output = byTestId("complete-output", root);
    this.runButton = byTestId("complete-run", root);
    this.stopButton = byTestId("complete-stop", root);
    byTestId("complete-form", root).addEventListener("submit", (e) => {
      e.preventDefault();
      this.run();
    });
    this.stopButton.addEventListener("click", () => this.controller?.abort());
  }

  async run() {
    const fields = this.params.read();
    if (fields === null || this.controller) return;
    const body = {
      model: this.models.value,
      prompt: this.prompt.value,
      ...completionFields(fields),
      stream: true,
      stream_options: { include_usage: true },
    };
    const n = body.n ?? 1;
    const boxes = [];
    const status = el("span", { class: "status", "data-testid": "complete-status", text: "streaming…" });
    const usageLine = el("span", { class: "usage", "data-testid": "complete-usage" });
    this.output.replaceChildren();
    for (let i = 0; i < n; i++) {
      const text = el("span", { class: "completion", "data-testid": "completion-text" });
      boxes.push(text);
      this.output.append(
        el(
          "div",
          { class: "choice", "data-testid": "completion-choice", "data-index": String(i) },
          n > 1 ? el("div", { class: "choice-label", text: `choice ${i}` }) : null,
          el("pre", { class: "content" }, el("span", { class: "prompt-echo", text: body.prompt }), text),
        ),
      );
    }
    this.output.append(el("div", { class: "meta" }, status, usageLine));
    this.controller = new AbortController();
    this.runButton.disabled = true;
    this.stopButton.disabled = false;
    const started = performance.now();
    const reasons = new Set();
    let usage = null;
    try {
      const resp = await request("/v1/completions", {
        method: "POST",
        body,
        signal: this.controller.signal,
      });
      for await (const chunk of sseEvents(resp)) {
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          const box = boxes[choice.index];
          if (!box) continue;
          if (choice.logprobs && choice.logprobs.tokens.length) {
            appendTokens(box, entries(choice.logprobs));
          } else if (choice.text) {
            box.append(choice.text);
          }
          if (choice.finish_reason) reasons.add(choice.finish_reason);
        }
      }
      status.dataset.state = "done";
      status.textContent = `done (${[...reasons].join(", ")})`;
    } catch (error) {
      status.dataset.state = error.name === "AbortError" ? "stopped" : "error";
      status.textContent = status.dataset.state;
      if (error.name !== "AbortError") {
        this.output.append(
          el("div", { class: "error", role: "alert", "data-testid": "complete-error", text: error.message }),
        );
      }
    } finally {
      this.controller = null;
      this.runButton.disabled = false;
      this.stopButton.disabled = true;
    }
    const parts = usage
      ? [`prompt ${usage.prompt_tokens}`, `completion ${usage.completion_tokens} tokens`]
      : [];
    parts.push(`total ${Math.round(performance.now() - started)} ms`);
    usageLine.textContent = parts.join(" · ");
  }
}
