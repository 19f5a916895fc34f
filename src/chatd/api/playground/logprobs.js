// The logprobs view: each generated token is a <span> shaded by its probability (the
// less likely, the darker), with the top alternatives and their probabilities in a
// tooltip shown on hover or focus.

import { el } from "./dom.js";

/** A token's text as shown in the alternatives list: whitespace made visible. */
function visible(token) {
  return JSON.stringify(token);
}

function percent(logprob) {
  const p = Math.exp(logprob) * 100;
  return p >= 10 ? `${p.toFixed(0)}%` : `${p.toPrecision(2)}%`;
}

/** One token of ``choices[].logprobs.content`` as a shaded, hoverable span. */
export function tokenSpan(entry) {
  const probability = Math.exp(entry.logprob);
  const alternatives = (entry.top_logprobs || []).map((alt) =>
    el(
      "li",
      { class: alt.token === entry.token ? "chosen" : "" },
      el("code", { text: visible(alt.token) }),
      el("span", { text: percent(alt.logprob) }),
    ),
  );
  const tip = el(
    "span",
    { class: "alts", role: "tooltip", "data-testid": "token-alternatives" },
    el("strong", { text: `${visible(entry.token)} ${percent(entry.logprob)}` }),
    alternatives.length ? el("ol", {}, alternatives) : el("em", { text: "no alternatives" }),
  );
  const span = el(
    "span",
    {
      class: "token",
      tabindex: "0",
      "data-testid": "token",
      "data-probability": probability.toFixed(4),
      "aria-label": `${visible(entry.token)}, probability ${percent(entry.logprob)}`,
    },
    entry.token,
    tip,
  );
  // CSSOM, not a style attribute: allowed by the page's Content-Security-Policy
  span.style.setProperty("--p", probability.toFixed(4));
  return span;
}

/** Append a chunk's ``logprobs.content`` to ``container``. */
export function appendTokens(container, content) {
  for (const entry of content || []) container.append(tokenSpan(entry));
}
